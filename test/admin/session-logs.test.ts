// Long sessions in the log: `session opened` when the upstream connects
// (log.sessionOpened), and `session progress` once per log.progressInterval
// with the bytes so far and both legs' TCP_INFO.

import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { waitUntil } from "../helpers/in-process-proxy.js";
import { startProxiedSession } from "../helpers/proxied-session.js";
import { startTestProxy } from "../helpers/in-process-proxy.js";
import { connectClient, startServer } from "../helpers/tcp.js";

describe("long sessions in the log", () => {
  it("writes two progress lines with growing byte counts for a session open 5 s with progressInterval 2s, then its session closed line", {
    timeout: 15_000,
  }, async () => {
    const upstream = await startServer();
    const p = await startTestProxy(
      {},
      {
        log: { progressInterval: "2s" },
        workers: 1,
        listeners: [{ name: "pg", listen: "127.0.0.1:0", upstream: { address: `127.0.0.1:${upstream.port}` } }],
      },
    );
    const client = await connectClient(p.port);
    const server = await upstream.accepted();
    server.on("data", () => {});
    const started = Date.now();
    // A byte every 250 ms: the counts grow between the two lines.
    const writer = setInterval(() => client.write("x"), 250);
    await waitUntil(() => Date.now() - started >= 5_000 || undefined, 6_000, "5 s");
    clearInterval(writer);
    client.end();
    server.end();
    await p.nextClosed();
    const lines = p.logs.filter((l) => l.msg === "session progress" || l.msg === "session closed");
    expect(lines.map((l) => l.msg)).toEqual(["session progress", "session progress", "session closed"]);
    const [first, second, closed] = lines as unknown as [Record<string, unknown>, Record<string, unknown>, Record<string, unknown>];
    expect(first).toMatchObject({ level: "info", listener: "pg", sessionId: closed.sessionId, upstream: `127.0.0.1:${upstream.port}` });
    expect(first.ageMs).toBeGreaterThanOrEqual(2_000);
    expect(first.ageMs).toBeLessThan(3_000);
    expect(second.ageMs).toBeGreaterThanOrEqual(4_000);
    expect(second.ageMs).toBeLessThan(5_000);
    expect(first.bytesFromClient).toBeGreaterThan(0);
    expect(second.bytesFromClient as number).toBeGreaterThan(first.bytesFromClient as number);
    expect(closed.bytesFromClient as number).toBeGreaterThan(second.bytesFromClient as number);
    expect(first.legs).toMatchObject({ client: { state: "ESTABLISHED", keepaliveProbesSent: 0 }, upstream: { state: "ESTABLISHED" } });
  });

  it("writes session opened when the upstream connects only with log.sessionOpened, and nothing without the settings", async () => {
    const quiet = await startProxiedSession();
    await quiet.establish();
    expect(quiet.logs.filter((l) => l.msg === "session opened" || l.msg === "session progress")).toEqual([]);

    const upstream = await startServer();
    const p = await startTestProxy(
      {},
      {
        log: { sessionOpened: true },
        workers: 1,
        listeners: [{ name: "pg", listen: "127.0.0.1:0", upstream: { address: `127.0.0.1:${upstream.port}` } }],
      },
    );
    const client = await connectClient(p.port);
    await upstream.accepted();
    const opened = await waitUntil(() => p.logs.find((l) => l.msg === "session opened"), 3_000, "the session opened line");
    expect(opened).toMatchObject({ level: "info", listener: "pg", upstream: `127.0.0.1:${upstream.port}`, client: `127.0.0.1:${client.localPort}` });
    expect(typeof opened.sessionId).toBe("string");
  });

  it("refuses a progress interval under 1 s other than 0, and defaults to off", () => {
    const base = { listeners: [{ name: "a", listen: "127.0.0.1:0", upstream: { address: "127.0.0.1:9" } }] };
    expect(loadConfig({ file: undefined, overrides: [], document: base }).log).toMatchObject({ sessionOpened: false, progressInterval: 0 });
    expect(() => loadConfig({ file: undefined, overrides: [], document: { ...base, log: { progressInterval: "500ms" } } })).toThrow(/at least 1s/);
    expect(loadConfig({ file: undefined, overrides: [], document: { ...base, log: { progressInterval: "1h" } } }).log.progressInterval).toBe(3_600_000);
  });
});
