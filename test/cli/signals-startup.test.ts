import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { constants } from "node:os";
import { describe, expect, it, onTestFinished } from "vitest";
import { reloadConfig } from "../../src/cli/reload.js";
import { ChildLog } from "../helpers/child-log.js";
import { startTestProxy, waitUntil } from "../helpers/in-process-proxy.js";
import { startLocalProxy, writeTempConfig } from "../helpers/local-proxy.js";
import { CLI_PATH, type ProxyLogLine } from "../helpers/proxy-process.js";
import { connectClient, observe, startServer } from "../helpers/tcp.js";
import { catchesSignal, listeningPorts, treeListeningPorts } from "./processes.js";

/** Sends bytes through the proxy at `port` and waits until the upstream has them. */
async function carriesBytes(port: number, upstream: Awaited<ReturnType<typeof startServer>>, text: string): Promise<void> {
  const client = await connectClient(port);
  const server = await upstream.accepted();
  const atServer = observe(server);
  client.write(text);
  await waitUntil(() => atServer.bytes === text.length || undefined, 5000, `"${text}" through the proxy`);
  // Both ends close, so the session is over and a later drain has nothing to wait for.
  client.destroy();
  server.destroy();
}

/** The CLI as a child process, before it is up: the test signals it during startup. */
function spawnCli(args: readonly string[]): { child: ChildProcessWithoutNullStreams; log: ChildLog<ProxyLogLine>; stderr: () => string } {
  const child = spawn(process.execPath, [CLI_PATH, ...args], { stdio: ["pipe", "pipe", "pipe"] });
  const log = new ChildLog<ProxyLogLine>(child, "proxy");
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  onTestFinished(() => log.stop(() => child.kill("SIGKILL"), 3000));
  return { child, log, stderr: () => stderr };
}

/**
 * How long Node takes on this machine, now, from spawn to running the first
 * statement of a program: before that no program can catch a signal (Node
 * resets every handler at boot). Measured on a bare Node whose first statement
 * installs a SIGHUP handler, read from its SigCgt mask.
 */
async function nodeBootMs(): Promise<number> {
  const spawned = Date.now();
  const bare = spawn(process.execPath, ["-e", "process.on('SIGHUP', () => {}); setInterval(() => {}, 1000)"], { stdio: "ignore" });
  onTestFinished(() => {
    bare.kill("SIGKILL");
  });
  await waitUntil(() => catchesSignal(bare.pid ?? 0, constants.signals.SIGHUP) || undefined, 10_000, "a bare node to boot");
  bare.kill("SIGKILL");
  return Date.now() - spawned;
}

/**
 * Signals `child` during its startup: 100 ms after spawn, or on a machine so
 * loaded that Node itself boots slower, twice the boot time just measured.
 * Either is long before the proxy is up (its modules alone take ~0.4 s to
 * load). Resolves with how long after spawn it was sent.
 */
async function signalDuringStartup(child: ChildProcessWithoutNullStreams, signal: "SIGHUP" | "SIGTERM", bootMs: number): Promise<number> {
  const spawned = Date.now();
  const delay = Math.max(100, 2 * bootMs);
  await new Promise((resolve) => setTimeout(resolve, delay - (Date.now() - spawned)));
  child.kill(signal);
  return Date.now() - spawned;
}

describe("signals during startup", () => {
  it("a SIGHUP 100 ms after start does not kill the proxy: it reloads once it is up", async () => {
    const upstream = await startServer();
    const file = writeTempConfig(
      `admin: { listen: null }\nlisteners:\n  - name: a\n    listen: 127.0.0.1:0\n    upstream: { address: 127.0.0.1:${upstream.port} }\n`,
    );
    const bootMs = await nodeBootMs();
    const { child, log } = spawnCli(["--config", file]);
    const sentAfterMs = await signalDuringStartup(child, "SIGHUP", bootMs);
    const listening = await log.entries.waitFor((l) => l.msg === "listening", 30_000, "listening");
    const reloaded = await log.entries.waitFor((l) => l.msg === "config reloaded", 5000, "the reload");
    // Node 20 reads the queued signal while its modules load, Node 24 once the proxy is up: either way after "listening".
    const during = log.entries.items.some((l) => l.msg.startsWith("SIGHUP arrived during startup"));
    console.log(`SIGHUP sent ${sentAfterMs} ms after spawn (Node boots in ${bootMs} ms); honoured once listening; seen during startup: ${during}`);
    // By the clock of the lines, not their order on stdout: worker processes' lines reach it on their own schedule.
    expect(Date.parse(String(reloaded.time))).toBeGreaterThanOrEqual(Date.parse(String(listening.time)));
    await carriesBytes(Number(listening.port), upstream, "still here");
    expect(child.exitCode).toBeNull();
  });

  it("a SIGTERM during startup is honoured once the proxy is up: it drains and exits 0", async () => {
    const upstream = await startServer();
    const bootMs = await nodeBootMs();
    const { child, log } = spawnCli(["--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${upstream.port}`, "--admin", "off"]);
    await signalDuringStartup(child, "SIGTERM", bootMs);
    await log.exited;
    expect(child.exitCode, JSON.stringify(log.entries.items)).toBe(0);
    const msgs = log.entries.items.map((l) => l.msg);
    expect(msgs.indexOf("listening")).toBeGreaterThanOrEqual(0);
    const at = (msg: string): number => Date.parse(String(log.entries.items.find((l) => l.msg === msg)?.time));
    expect(at("shutting down")).toBeGreaterThanOrEqual(at("listening"));
    expect(log.entries.items.find((l) => l.msg === "shutting down")).toMatchObject({ signal: "SIGTERM" });
    expect(msgs).toContain("stopped");
  });
});

describe("SIGUSR1 and SIGUSR2", () => {
  it("SIGUSR1 opens no inspector: the proxy listens on nothing new, 9229 included", async () => {
    // Control: a bare Node opens its inspector on SIGUSR1 and the /proc reading sees it.
    // The inspector's port 0 keeps the control off 9229, which another process may hold.
    const bare = spawn(process.execPath, ["--inspect-port=0", "-e", "process.on('SIGHUP', () => {}); setInterval(() => {}, 1000)"], { stdio: "ignore" });
    onTestFinished(() => {
      bare.kill("SIGKILL");
    });
    await waitUntil(() => catchesSignal(bare.pid ?? 0, constants.signals.SIGHUP) || undefined, 10_000, "the bare node to boot");
    const sent = Date.now();
    bare.kill("SIGUSR1");
    await waitUntil(() => listeningPorts(bare.pid ?? 0).length > 0 || undefined, 10_000, "the bare node's inspector");
    const inspectorOpensMs = Date.now() - sent;

    const upstream = await startServer();
    const { child, log, stderr } = spawnCli(["--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${upstream.port}`, "--admin", "off"]);
    const port = Number((await log.entries.waitFor((l) => l.msg === "listening", 30_000, "listening")).port);
    const pid = child.pid ?? 0;
    // The supervisor and its workers: the workers hold the listening sockets, the supervisor takes the signal.
    expect(treeListeningPorts(pid)).toEqual([port]);
    child.kill("SIGUSR1");
    const ignored = await log.entries.waitFor((l) => l.msg.startsWith("SIGUSR1 ignored"), 5000, "the SIGUSR1 line");
    expect(ignored).toMatchObject({ level: "info", signal: "SIGUSR1" });
    // Give an inspector ten times as long as the control's took to open; it never does.
    const until = Date.now() + Math.max(10 * inspectorOpensMs, 200);
    const seen = await waitUntil(() => (treeListeningPorts(pid).length !== 1 ? "opened" : Date.now() > until ? "never" : undefined), 20_000, "the watch to end");
    expect(seen).toBe("never");
    expect(treeListeningPorts(pid)).toEqual([port]);
    expect(treeListeningPorts(pid)).not.toContain(9229);
    // Nor did it try and fail (9229 held by another process): Node says so on stderr when it does.
    expect(stderr()).not.toMatch(/inspector|Debugger/i);
    await carriesBytes(port, upstream, "after SIGUSR1");
  });

  it("SIGUSR2 leaves the proxy alive and serving, with one log line", async () => {
    const upstream = await startServer();
    const proxy = await startLocalProxy(["--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${upstream.port}`, "--admin", "off"]);
    const mark = proxy.logs.items.length;
    proxy.signal("SIGUSR2");
    await proxy.waitForLog((l) => l.msg.startsWith("SIGUSR2 ignored"), 5000, "the SIGUSR2 line", mark);
    await carriesBytes(proxy.port, upstream, "after SIGUSR2");
    proxy.signal("SIGTERM");
    expect(await proxy.exitCode()).toBe(0);
  });
});

describe("SIGHUP with a config the YAML library cannot resolve", () => {
  it("refuses the reload with one error line and keeps serving", async () => {
    const upstream = await startServer();
    const good = `admin: { listen: null }\nlisteners:\n  - name: a\n    listen: 127.0.0.1:0\n    upstream: { address: 127.0.0.1:${upstream.port} }\n`;
    const file = writeTempConfig(good);
    const proxy = await startLocalProxy(["--config", file]);
    writeFileSync(file, `${good}    client:\n      keepalive: *undefinedAlias\n`);
    const mark = proxy.logs.items.length;
    proxy.signal("SIGHUP");
    const refused = await proxy.waitForLog((l) => l.level === "error", 5000, "the refusal", mark);
    expect(refused.msg).toBe("reload refused: invalid config; the running config stays in force");
    expect(String(refused.problems)).toMatch(/alias \*undefinedAlias has no anchor/);
    await carriesBytes(proxy.port, upstream, "after the refused reload");
    expect(proxy.logs.items.slice(mark).filter((l) => l.level === "error")).toHaveLength(1);
  });

  it("a loader that throws something other than a ConfigError is logged at error, never rethrown", async () => {
    const upstream = await startServer();
    const test = await startTestProxy({ upstream: `127.0.0.1:${upstream.port}` });
    const mark = test.logs.length;
    await expect(
      reloadConfig(test.proxy, () => {
        throw new TypeError("not a config problem");
      }),
    ).resolves.toBeUndefined();
    const lines = test.logs.slice(mark);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: "error", msg: "reload failed unexpectedly; the running config stays in force" });
    expect(String((lines[0]?.err as { message?: string } | undefined)?.message)).toBe("not a config problem");
    await carriesBytes(test.port, upstream, "after the failed reload");
  });
});
