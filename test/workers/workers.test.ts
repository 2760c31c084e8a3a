// --workers 2: one proxy to an operator (one PID for signals, one admin
// server, merged metrics, exact limits), two processes accepting on their own
// SO_REUSEPORT sockets underneath.

import { readFileSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { httpGet } from "../helpers/http.js";
import { waitUntil } from "../helpers/in-process-proxy.js";
import { startLocalProxy, writeTempConfig } from "../helpers/local-proxy.js";
import { parseMetrics, sampleValue } from "../helpers/metrics-text.js";
import { poll } from "../helpers/poll.js";
import type { ProxyProcess } from "../helpers/proxy-process.js";
import { connectClient, observe, startServer } from "../helpers/tcp.js";

/** The worker processes of a supervisor, from /proc. */
function workerPids(supervisor: number): number[] {
  return readFileSync(`/proc/${supervisor}/task/${supervisor}/children`, "utf8").split(/\s+/).filter(Boolean).map(Number);
}

async function scrape(adminPort: number): Promise<ReturnType<typeof parseMetrics>> {
  return parseMetrics((await httpGet({ port: adminPort }, "/metrics")).body);
}

function yaml(upstreamPort: number, listeners: readonly string[], extra = ""): string {
  return [
    "workers: 2",
    "admin: { listen: 127.0.0.1:0 }",
    "shutdown: { drainTimeout: 2s }",
    "listeners:",
    ...listeners.map((name) => `  - { name: ${name}, listen: 127.0.0.1:0, upstream: { address: "127.0.0.1:${upstreamPort}" }${extra} }`),
    "",
  ].join("\n");
}

/** Opens a client through the proxy and waits until its upstream side exists. */
async function openSession(port: number, upstream: Awaited<ReturnType<typeof startServer>>): Promise<{ client: Socket; server: Socket }> {
  const client = await connectClient(port);
  const server = await upstream.accepted();
  return { client, server };
}

async function startTwoWorkers(args: readonly string[]): Promise<{ proxy: ProxyProcess; adminPort: number }> {
  const proxy = await startLocalProxy(args);
  await proxy.waitForLog((l) => l.msg === "workers started", 30_000, "both workers");
  return { proxy, adminPort: await proxy.adminPort() };
}

describe("--workers 2", () => {
  it("spreads 200 connections over both workers, logs one session closed line each with its worker, and counts each once", async () => {
    const upstream = await startServer();
    const { proxy, adminPort } = await startTwoWorkers(["--config", writeTempConfig(yaml(upstream.port, ["a"]))]);
    expect(workerPids(proxy.pid)).toHaveLength(2);
    // Each worker runs with the young-generation cap (README, "Memory").
    for (const pid of workerPids(proxy.pid)) expect(readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")).toContain("--max-semi-space-size=2");
    const ends: Socket[] = [];
    for (let i = 0; i < 200; i++) {
      const { client, server } = await openSession(proxy.port, upstream);
      ends.push(client, server);
    }
    for (const s of ends) s.destroy();
    const lines = await poll(
      async () => {
        const closed = proxy.logs.items.filter((l) => l.msg === "session closed");
        return closed.length >= 200 ? closed : undefined;
      },
      15_000,
      "200 session closed lines",
    );
    expect(lines).toHaveLength(200);
    const perWorker = new Map<unknown, number>();
    for (const l of lines) perWorker.set(l.worker, (perWorker.get(l.worker) ?? 0) + 1);
    console.log(`200 connections over two workers: ${JSON.stringify(Object.fromEntries(perWorker))}`);
    expect([...perWorker.keys()].sort()).toEqual([1, 2]);
    for (const n of perWorker.values()) expect(n).toBeGreaterThan(0);
    expect(proxy.logs.items.every((l) => l.worker !== undefined)).toBe(true);
    const m = await scrape(adminPort);
    expect(sampleValue(m, "keepalive_proxy_connections_accepted_total", { listener: "a" })).toBe(200);
    expect(sampleValue(m, "keepalive_proxy_connections_active", { listener: "a" })).toBe(0);
    expect(sampleValue(m, "keepalive_proxy_workers")).toBe(2);
    expect(sampleValue(m, "keepalive_proxy_listener_up", { listener: "a" })).toBe(1);
    const ready = await httpGet({ port: adminPort }, "/readyz");
    expect(ready.status).toBe(200);
  });

  it("admits exactly maxConnections across both workers, and admits again once one closes", async () => {
    const upstream = await startServer();
    const { proxy, adminPort } = await startTwoWorkers(["--config", writeTempConfig(yaml(upstream.port, ["a"], ", maxConnections: 10"))]);
    const sockets = await Promise.all(Array.from({ length: 30 }, () => connect({ host: "127.0.0.1", port: proxy.port })));
    const seen = sockets.map((s) => observe(s));
    for (const s of sockets) s.write("x");
    await waitUntil(() => seen.filter((o) => o.closed).length >= 20 || undefined, 10_000, "20 clients refused");
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(seen.filter((o) => !o.closed)).toHaveLength(10);
    const m = await scrape(adminPort);
    expect(sampleValue(m, "keepalive_proxy_sessions_closed_total", { listener: "a", side: "proxy", reason: "proxy_connection_limit" })).toBe(20);
    expect(sampleValue(m, "keepalive_proxy_connections_active", { listener: "a" })).toBe(10);
    const workersWithSessions = new Set((JSON.parse((await httpGet({ port: adminPort }, "/connections")).body) as { connections: { worker: number }[] }).connections.map((c) => c.worker));
    console.log(`10 sessions held by workers ${[...workersWithSessions].join(", ")}`);
    // One closes: a new client is admitted, whichever worker the kernel gives it to.
    sockets[seen.findIndex((o) => !o.closed)]?.resetAndDestroy();
    await poll(
      async () => (sampleValue(await scrape(adminPort), "keepalive_proxy_connections_active", { listener: "a" }) === 9 ? true : undefined),
      5_000,
      "the slot to be free",
    );
    const again = observe(connect({ host: "127.0.0.1", port: proxy.port }));
    again.socket.write("y");
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(again.closed).toBe(false);
    for (const s of sockets) s.destroy();
    again.socket.destroy();
  });

  it("applies a SIGHUP that adds and removes listeners in both workers, and SIGTERM drains both", async () => {
    const upstream = await startServer();
    const file = writeTempConfig(yaml(upstream.port, ["a", "b"]));
    const { proxy, adminPort } = await startTwoWorkers(["--config", file]);
    writeFileSync(file, yaml(upstream.port, ["a", "c"]));
    const mark = proxy.logs.items.length;
    proxy.signal("SIGHUP");
    const reloaded = await proxy.waitForLog((l) => l.msg === "config reloaded", 30_000, "the reload", mark);
    expect(reloaded).toMatchObject({ started: ["c"], stopped: ["b"], worker: "supervisor" });
    // Each worker logs its own `listening` line, on its own schedule.
    const cLines = await poll(
      async () => {
        const lines = proxy.logs.items.slice(mark).filter((l) => l.msg === "listening" && l.listener === "c");
        return lines.length >= 2 ? lines : undefined;
      },
      5_000,
      "both workers listening on c",
    );
    expect(new Set(cLines.map((l) => l.worker))).toEqual(new Set([1, 2]));
    expect(new Set(cLines.map((l) => l.port)).size).toBe(1);
    const m = await scrape(adminPort);
    expect(sampleValue(m, "keepalive_proxy_listener_up", { listener: "c" })).toBe(1);
    expect(sampleValue(m, "keepalive_proxy_config_reloads_total", { result: "success" })).toBe(1);

    const { client } = await openSession(Number(cLines[0]?.port), upstream);
    const atClient = observe(client);
    const pids = workerPids(proxy.pid);
    proxy.signal("SIGTERM");
    expect(await proxy.exitCode()).toBe(0);
    await waitUntil(() => atClient.closed, 5_000, "the session to be reset at the drain timeout");
    expect(atClient.errorCode).toBe("ECONNRESET");
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
    expect(proxy.logs.items.filter((l) => l.msg === "session closed" && l.reason === "proxy_shutdown")).toHaveLength(1);
  });

  it("gives the client leg's socket options on both workers' sockets, as the kernel reads them back", async () => {
    const upstream = await startServer();
    const { proxy, adminPort } = await startTwoWorkers([
      "--config",
      writeTempConfig(yaml(upstream.port, ["a"])),
      "--client-keepalive-idle",
      "7s",
      "--client-keepalive-interval",
      "3s",
      "--client-keepalive-count",
      "4",
    ]);
    type Listed = { connections: { worker: number; legs: { client: { options: Record<string, unknown> | null } } }[] };
    const open: Socket[] = [];
    const listing = await poll(
      async () => {
        const { client } = await openSession(proxy.port, upstream);
        open.push(client);
        const body = JSON.parse((await httpGet({ port: adminPort }, "/connections")).body) as Listed;
        return new Set(body.connections.map((c) => c.worker)).size === 2 ? body : undefined;
      },
      20_000,
      "sessions on both workers",
      10,
    );
    for (const c of listing.connections) {
      expect(c.legs.client.options).toMatchObject({ keepalive: true, keepaliveIdleSeconds: 7, keepaliveIntervalSeconds: 3, keepaliveCount: 4, userTimeoutMs: 19_000 });
    }
    for (const s of open) s.destroy();
  });

  it("replaces a worker killed with SIGKILL, counts it, and serves a client that connects meanwhile", async () => {
    const upstream = await startServer();
    const { proxy, adminPort } = await startTwoWorkers(["--config", writeTempConfig(yaml(upstream.port, ["a"]))]);
    const kept = await openSession(proxy.port, upstream);
    const atKept = observe(kept.server);
    // Kill the worker that does not hold the kept session.
    const listed = JSON.parse((await httpGet({ port: adminPort }, "/connections")).body) as { connections: { worker: number }[] };
    const keptOn = listed.connections[0]?.worker;
    // Each worker's own `listening` line names its pid (workers' lines reach stdout on their own schedule).
    const pidOf = async (slot: number): Promise<number> =>
      Number((await proxy.waitForLog((l) => l.msg === "listening" && l.worker === slot, 5_000, `worker ${slot} listening`)).pid);
    const victim = await pidOf(keptOn === 1 ? 2 : 1);
    const survivor = await pidOf(keptOn ?? 1);
    process.kill(victim, "SIGKILL");
    // Meanwhile (dead, not yet replaced): the surviving worker's socket takes every new client.
    await proxy.waitForLog((l) => l.msg.startsWith("worker died"), 5_000, "the death to be noticed");
    const replacedEarly = proxy.logs.items.some((l) => l.msg === "worker replaced");
    const during = await openSession(proxy.port, upstream);
    const atDuring = observe(during.server);
    during.client.write("served");
    await waitUntil(() => atDuring.bytes === 6 || undefined, 5_000, "a client served while the worker is replaced");
    expect(replacedEarly).toBe(false);
    await proxy.waitForLog((l) => l.msg === "worker replaced", 5_000, "the replacement");
    const died = proxy.logs.items.find((l) => l.msg.startsWith("worker died"));
    expect(died).toMatchObject({ level: "error", signal: "SIGKILL", workerPid: victim });
    expect(workerPids(proxy.pid)).toHaveLength(2);
    expect(workerPids(proxy.pid)).toContain(survivor);
    const m = await scrape(adminPort);
    expect(sampleValue(m, "keepalive_proxy_worker_restarts_total")).toBe(1);
    expect(sampleValue(m, "keepalive_proxy_workers")).toBe(2);
    // The session on the surviving worker is untouched.
    kept.client.write("still");
    await waitUntil(() => atKept.bytes === 5 || undefined, 5_000, "bytes on a session of the surviving worker");
    expect(atKept.ended).toBe(false);
  });
});
