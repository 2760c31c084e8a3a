// The proxy's own metrics, read from a real scrape of /metrics while real
// sessions run through an in-process proxy on loopback.

import { register as globalRegistry } from "prom-client";
import { describe, expect, it } from "vitest";
import { ALL_CLOSE_REASONS, sideOf } from "../../src/proxy/session/close-reason.js";
import { startAdminProxy } from "../helpers/admin-proxy.js";
import { startTestProxy, waitUntil } from "../helpers/in-process-proxy.js";
import { allSamples, sampleValue } from "../helpers/metrics-text.js";
import { startAdminSession } from "../helpers/proxied-session.js";
import { connectClient, observe, sendRandom, startServer } from "../helpers/tcp.js";
import { ConfigError } from "../../src/config/errors.js";

const L = { listener: "default" };
const KB = 1024;

describe("proxy metrics", () => {
  it("shows every close reason, connect result and direction at zero before the first session", async () => {
    const upstream = await startServer();
    const p = await startAdminProxy({ upstream: `127.0.0.1:${upstream.port}` });
    const m = await p.scrape();

    for (const reason of ALL_CLOSE_REASONS) {
      expect(sampleValue(m, "keepalive_proxy_sessions_closed_total", { ...L, side: sideOf(reason), reason })).toBe(0);
    }
    const closed = allSamples(m).filter((s) => s.name === "keepalive_proxy_sessions_closed_total");
    expect(closed).toHaveLength(ALL_CLOSE_REASONS.length);
    for (const result of ["ok", "refused", "unreachable", "dns_failure", "timeout", "error"]) {
      expect(sampleValue(m, "keepalive_proxy_upstream_connect_attempts_total", { ...L, result })).toBe(0);
    }
    for (const direction of ["client_to_upstream", "upstream_to_client"]) {
      expect(sampleValue(m, "keepalive_proxy_forwarded_bytes_total", { ...L, direction })).toBe(0);
    }
    for (const result of ["success", "failure"]) expect(sampleValue(m, "keepalive_proxy_config_reloads_total", { result })).toBe(0);
    expect(sampleValue(m, "keepalive_proxy_connections_accepted_total", L)).toBe(0);
    expect(sampleValue(m, "keepalive_proxy_connections_active", L)).toBe(0);
    expect(sampleValue(m, "keepalive_proxy_session_duration_seconds_count", L)).toBe(0);
    expect(sampleValue(m, "keepalive_proxy_upstream_connect_duration_seconds_count", L)).toBe(0);
    expect(sampleValue(m, "keepalive_proxy_listener_up", L)).toBe(1);
    expect(sampleValue(m, "keepalive_proxy_draining")).toBe(0);
    expect(sampleValue(m, "keepalive_proxy_build_info", { version: "0.1.0", node_version: process.version })).toBe(1);
    expect(m.has("process_cpu_seconds_total")).toBe(true);
    expect(m.has("nodejs_eventloop_lag_seconds")).toBe(true);
  });

  it("counts an accepted session, its connect, its close reason, its lifetime and its bytes each way", async () => {
    const p = await startAdminSession();
    const { client, server, atClient, atServer } = p;

    const during = await p.scrape();
    expect(sampleValue(during, "keepalive_proxy_connections_accepted_total", L)).toBe(1);
    expect(sampleValue(during, "keepalive_proxy_connections_active", L)).toBe(1);
    expect(sampleValue(during, "keepalive_proxy_upstream_connect_attempts_total", { ...L, result: "ok" })).toBe(1);
    expect(sampleValue(during, "keepalive_proxy_upstream_connect_duration_seconds_count", L)).toBe(1);

    await sendRandom(client, 300 * KB);
    await waitUntil(() => atServer.bytes === 300 * KB, 5000, "300 KB at the upstream");
    client.end();
    await sendRandom(server, 700 * KB);
    server.end();
    await waitUntil(() => atClient.ended && atClient.closed && atServer.closed, 5000, "both legs closed");
    await p.nextClosed();

    const after = await p.scrape();
    expect(sampleValue(after, "keepalive_proxy_connections_active", L)).toBe(0);
    expect(sampleValue(after, "keepalive_proxy_sessions_closed_total", { ...L, side: "client", reason: "client_eof" })).toBe(1);
    expect(sampleValue(after, "keepalive_proxy_forwarded_bytes_total", { ...L, direction: "client_to_upstream" })).toBe(300 * KB);
    expect(sampleValue(after, "keepalive_proxy_forwarded_bytes_total", { ...L, direction: "upstream_to_client" })).toBe(700 * KB);
    expect(sampleValue(after, "keepalive_proxy_session_duration_seconds_count", L)).toBe(1);
    expect(sampleValue(after, "keepalive_proxy_session_duration_seconds_bucket", { ...L, le: "+Inf" })).toBe(1);
  });

  it("counts the bytes of a session still open at each scrape, and none twice when it closes", async () => {
    const p = await startAdminSession();
    const { client, server, atClient, atServer } = p;
    const up = (m: Awaited<ReturnType<typeof p.scrape>>): number => sampleValue(m, "keepalive_proxy_forwarded_bytes_total", { ...L, direction: "client_to_upstream" });
    const down = (m: Awaited<ReturnType<typeof p.scrape>>): number => sampleValue(m, "keepalive_proxy_forwarded_bytes_total", { ...L, direction: "upstream_to_client" });

    await sendRandom(client, 100 * KB);
    await waitUntil(() => atServer.bytes === 100 * KB, 5000, "100 KB at the upstream");
    const first = await p.scrape();
    expect([up(first), down(first)]).toEqual([100 * KB, 0]);

    await sendRandom(server, 50 * KB);
    await waitUntil(() => atClient.bytes === 50 * KB, 5000, "50 KB at the client");
    const second = await p.scrape();
    expect([up(second), down(second)]).toEqual([100 * KB, 50 * KB]);
    // A scrape with nothing new adds nothing.
    const third = await p.scrape();
    expect([up(third), down(third)]).toEqual([100 * KB, 50 * KB]);

    await sendRandom(client, 10 * KB);
    await waitUntil(() => atServer.bytes === 110 * KB, 5000, "110 KB at the upstream");
    client.resetAndDestroy();
    expect((await p.nextClosed()).reason).toBe("client_reset");
    const after = await p.scrape();
    expect([up(after), down(after)]).toEqual([110 * KB, 50 * KB]);
    expect(sampleValue(after, "keepalive_proxy_sessions_closed_total", { ...L, side: "client", reason: "client_reset" })).toBe(1);
  });

  it("counts each refused upstream connect as a failed attempt, and the session as an upstream_connect_failed close", async () => {
    const closedPort = await startServer().then(async ({ server, port }) => {
      await new Promise((r) => server.close(r));
      return port;
    });
    const p = await startAdminProxy({ upstream: `127.0.0.1:${closedPort}` });
    const client = await connectClient(p.port);
    const atClient = observe(client);
    await waitUntil(() => atClient.closed, 5000, "the client reset");
    await p.nextClosed();

    const m = await p.scrape();
    // One session, but the upstream pool retries: every attempt is counted, as the log reports it.
    const refusals = p.logs.filter((l) => l.msg === "upstream unreachable" && l.result === "refused").length;
    expect(refusals).toBeGreaterThanOrEqual(1);
    expect(sampleValue(m, "keepalive_proxy_upstream_connect_attempts_total", { ...L, result: "refused" })).toBe(refusals);
    expect(sampleValue(m, "keepalive_proxy_upstream_connect_attempts_total", { ...L, result: "ok" })).toBe(0);
    expect(sampleValue(m, "keepalive_proxy_upstream_connect_duration_seconds_count", L)).toBe(0);
    expect(sampleValue(m, "keepalive_proxy_sessions_closed_total", { ...L, side: "upstream", reason: "upstream_connect_failed" })).toBe(1);
    expect(sampleValue(m, "keepalive_proxy_connections_active", L)).toBe(0);
  });

  it("counts reloads by result, and shows a new listener's series at zero at once", async () => {
    const upstream = await startServer();
    const p = await startAdminProxy({ upstream: `127.0.0.1:${upstream.port}` });
    const current = p.proxy.currentConfig;
    const base = current.listeners[0];
    if (base === undefined) throw new Error("no listener");
    await p.proxy.reload({ ...current, listeners: [base, { ...base, name: "second", listen: { host: "127.0.0.1", port: 0 } }] });
    // A listener on the port of the one already bound cannot start: refused, config unchanged.
    const busy = [...p.proxy.listeners.values()][0]?.address()?.port ?? 0;
    await expect(p.proxy.reload({ ...current, listeners: [base, { ...base, name: "third", listen: { host: "127.0.0.1", port: busy } }] })).rejects.toThrow(/in use/);
    // A config file that no longer parses: the loader throws, the reload is a failure.
    await p.proxy.requestReload(() => {
      throw new ConfigError([{ path: "listeners", message: "is required" }]);
    });

    const m = await p.scrape();
    expect(sampleValue(m, "keepalive_proxy_config_reloads_total", { result: "success" })).toBe(1);
    expect(sampleValue(m, "keepalive_proxy_config_reloads_total", { result: "failure" })).toBe(2);
    expect(sampleValue(m, "keepalive_proxy_config_reloads_total", { result: "refused" })).toBe(0);
    expect(sampleValue(m, "keepalive_proxy_listener_up", { listener: "second" })).toBe(1);
    expect(sampleValue(m, "keepalive_proxy_sessions_closed_total", { listener: "second", side: "upstream", reason: "upstream_timeout" })).toBe(0);
    expect(allSamples(m).some((s) => s.labels.listener === "third")).toBe(false);
  });

  it("reports listeners down and draining from the start of shutdown", async () => {
    const p = await startAdminSession();
    const stopping = p.proxy.shutdown(5000);
    const m = await p.scrape();
    expect(sampleValue(m, "keepalive_proxy_draining")).toBe(1);
    expect(sampleValue(m, "keepalive_proxy_listener_up", L)).toBe(0);
    expect(sampleValue(m, "keepalive_proxy_connections_active", L)).toBe(1);
    p.client.resetAndDestroy();
    await stopping;
  });

  it("keeps each proxy's counts on a registry of its own, never prom-client's global one", async () => {
    const upstream = await startServer();
    const a = await startAdminProxy({ upstream: `127.0.0.1:${upstream.port}` });
    const b = await startTestProxy({ upstream: `127.0.0.1:${upstream.port}` });
    const client = await connectClient(a.port);
    await upstream.accepted();
    client.resetAndDestroy();
    await a.nextClosed();

    expect(sampleValue(await a.scrape(), "keepalive_proxy_connections_accepted_total", L)).toBe(1);
    const other = await b.proxy.metrics?.scrape();
    expect(other).toMatch(/^keepalive_proxy_connections_accepted_total\{listener="default"\} 0$/m);
    expect(globalRegistry.getMetricsAsArray()).toHaveLength(0);
  });
});
