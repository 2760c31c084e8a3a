// The proxy started with few descriptors (prlimit --nofile=128:128, so it
// cannot raise its own soft limit) and 200 clients at once: it stays up, its
// live sessions keep working, the clients it cannot serve are reset and
// counted, the upstream is never blamed, and it serves again once they leave.

import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { describe, expect, it, onTestFinished } from "vitest";
import { ChildLog } from "../helpers/child-log.js";
import { httpGet } from "../helpers/http.js";
import { waitUntil } from "../helpers/in-process-proxy.js";
import { parseMetrics, sampleValue } from "../helpers/metrics-text.js";
import { CLI_PATH, type ProxyLogLine } from "../helpers/proxy-process.js";

const FLOOD = 200;

/** An upstream that echoes every byte back. */
async function startEcho(): Promise<number> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
    s.pipe(s);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTestFinished(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as { port: number }).port;
}

type Outcome = "echoed" | "reset" | "ended" | "error";

/** Descriptors open in the proxy: the process and its children (a supervisor's workers, which each inherit the limit). */
function descriptorsOf(pid: number): number {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(/\s+/).filter(Boolean).map(Number);
  return [pid, ...children].reduce((sum, p) => sum + readdirSync(`/proc/${p}/fd`).length, 0);
}

/** Connects, sends one byte and says what came back: the echo, a reset, or an orderly end. */
function probe(port: number, keep: Socket[]): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    keep.push(socket);
    socket.once("connect", () => socket.write("x"));
    socket.once("data", () => resolve("echoed"));
    socket.once("end", () => resolve("ended"));
    socket.once("error", (e: NodeJS.ErrnoException) => resolve(e.code === "ECONNRESET" ? "reset" : "error"));
    socket.once("close", () => resolve("error"));
  });
}

/** One echo round trip on an open socket. */
function echo(socket: Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = "";
    const onData = (chunk: Buffer): void => {
      got += chunk.toString();
      if (got.length >= text.length) {
        socket.off("data", onData);
        resolve(got);
      }
    };
    socket.on("data", onData);
    socket.once("error", reject);
    socket.write(text);
  });
}

describe("descriptor exhaustion", () => {
  it("keeps live sessions, resets and counts the clients it cannot serve, blames no upstream, and recovers", { timeout: 60_000 }, async () => {
    const upstreamPort = await startEcho();
    const child = spawn(
      "prlimit",
      ["--nofile=128:128", "--", process.execPath, CLI_PATH, "--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${upstreamPort}`, "--admin", "127.0.0.1:0", "--drain-timeout", "0"],
      { stdio: ["pipe", "pipe", "pipe"] },
    );
    const log = new ChildLog<ProxyLogLine>(child, "proxy");
    onTestFinished(() => log.stop(() => child.kill("SIGTERM"), 3_000));
    const port = Number((await log.entries.waitFor((l) => l.msg === "listening", 30_000, "listening")).port);
    const adminPort = Number((await log.entries.waitFor((l) => l.msg === "admin listening", 10_000, "admin listening")).port);
    const pid = child.pid ?? 0;

    const live: Socket[] = [];
    for (let i = 0; i < 5; i++) {
      const s = connect({ host: "127.0.0.1", port });
      live.push(s);
      onTestFinished(() => {
        s.destroy();
      });
      expect(await echo(s, `live${i}`)).toBe(`live${i}`);
    }

    const flood: Socket[] = [];
    onTestFinished(() => {
      for (const s of flood) s.destroy();
    });
    const outcomes = await Promise.all(Array.from({ length: FLOOD }, () => probe(port, flood)));
    const count = (o: Outcome): number => outcomes.filter((x) => x === o).length;
    const descriptors = descriptorsOf(pid);
    console.log(
      `${FLOOD} clients against --nofile=128: echoed ${count("echoed")}, reset ${count("reset")}, ended ${count("ended")}, other ${count("error")}; proxy holds ${descriptors} descriptors (Node ${process.version})`,
    );

    // Alive, and the sessions from before still carry bytes.
    expect(child.exitCode).toBeNull();
    for (const [i, s] of live.entries()) expect(await echo(s, `again${i}`)).toBe(`again${i}`);
    expect(count("echoed")).toBeGreaterThan(0);
    expect(count("reset")).toBeGreaterThan(0);
    expect(count("echoed") + count("reset") + count("ended")).toBe(FLOOD);

    const metrics = parseMetrics((await httpGet({ port: adminPort }, "/metrics")).body);
    const counted = sampleValue(metrics, "keepalive_proxy_accept_errors_total", { listener: "default", errno: "EMFILE" });
    console.log(`accept_errors_total{errno="EMFILE"} = ${counted}`);
    expect(counted).toBe(count("reset"));
    expect(sampleValue(metrics, "keepalive_proxy_upstream_connect_attempts_total", { listener: "default", result: "error" })).toBe(0);
    expect(log.entries.items.filter((l) => l.msg === "upstream unreachable")).toEqual([]);
    expect(log.entries.items.filter((l) => l.level === "error" || l.level === "fatal")).toEqual([]);
    const warns = log.entries.items.filter((l) => l.level === "warn" && String(l.msg).startsWith("out of descriptors"));
    expect(warns.length).toBeGreaterThan(0);

    // Once the flood leaves, a new client is served.
    for (const s of flood) s.destroy();
    await waitUntil(() => descriptorsOf(pid) < descriptors - 50 || undefined, 10_000, "the flood's descriptors to be freed");
    const fresh = connect({ host: "127.0.0.1", port });
    onTestFinished(() => {
      fresh.destroy();
    });
    expect(await echo(fresh, "after")).toBe("after");
  });
});
