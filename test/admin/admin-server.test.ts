// The admin HTTP server of an in-process proxy: its endpoints, readiness
// through a shutdown, and what it does when its address is taken.

import pino from "pino";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { startProxy } from "../../src/main.js";
import { startAdminProxy } from "../helpers/admin-proxy.js";
import { httpGet } from "../helpers/http.js";
import { startAdminSession } from "../helpers/proxied-session.js";
import { connectClient, startServer } from "../helpers/tcp.js";

describe("admin server", () => {
  it("answers /healthz 200 and /readyz 200 once every listener is bound", async () => {
    const upstream = await startServer();
    const p = await startAdminProxy({ upstream: `127.0.0.1:${upstream.port}` });
    const health = await p.get("/healthz");
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toEqual({ status: "ok" });
    const ready = await p.get("/readyz");
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toEqual({ ready: true, draining: false, listeners: { default: "bound" } });
    expect(ready.headers["cache-control"]).toBe("no-store");
    expect(p.logs.find((l) => l.msg === "admin listening")).toMatchObject({ address: "127.0.0.1", port: p.admin.port });
  });

  it("serves /metrics in Prometheus' text format", async () => {
    const upstream = await startServer();
    const p = await startAdminProxy({ upstream: `127.0.0.1:${upstream.port}` });
    const res = await p.get("/metrics");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.body).toMatch(/^# TYPE keepalive_proxy_sessions_closed_total counter$/m);
  });

  it("answers 404 for other paths and 405 for methods other than GET and HEAD", async () => {
    const upstream = await startServer();
    const p = await startAdminProxy({ upstream: `127.0.0.1:${upstream.port}` });
    expect((await p.get("/nope")).status).toBe(404);
    expect((await p.get("/metrics/extra")).status).toBe(404);
    expect((await p.get("/readyz?x=1")).status).toBe(200);
    const post = await httpGet(p.admin, "/metrics", { method: "POST" });
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe("GET, HEAD");
    const head = await httpGet(p.admin, "/healthz", { method: "HEAD" });
    expect([head.status, head.body]).toEqual([200, ""]);
  });

  it("answers /readyz 503 from the start of shutdown while /healthz and /metrics answer until the drain ends", async () => {
    const p = await startAdminSession();

    const stopping = p.proxy.shutdown(10_000);
    const ready = await p.get("/readyz");
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.body)).toEqual({ ready: false, draining: true, listeners: { default: "not_bound" } });
    expect((await p.get("/healthz")).status).toBe(200);
    expect((await p.get("/metrics")).status).toBe(200);
    expect(p.proxy.sessionTotal).toBe(1);

    p.client.resetAndDestroy();
    await stopping;
    await expect(p.get("/healthz")).rejects.toThrow(/ECONNREFUSED/);
  });

  it("answers /readyz 503 naming a listener that stopped accepting", async () => {
    const upstream = await startServer();
    const p = await startAdminProxy({ upstream: `127.0.0.1:${upstream.port}` });
    const listener = p.proxy.listeners.get("default");
    if (listener === undefined) throw new Error("no listener");
    listener.stopAccepting();
    const ready = await p.get("/readyz");
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.body)).toEqual({ ready: false, draining: false, listeners: { default: "not_bound" } });
    expect((await p.get("/healthz")).status).toBe(200);
  });

  it("refuses to start, with the address and the fix, when the admin address is in use", async () => {
    const upstream = await startServer();
    const first = await startAdminProxy({ upstream: `127.0.0.1:${upstream.port}` });
    const config = loadConfig({
      file: undefined,
      overrides: [
        { flag: "listen", value: "127.0.0.1:0", source: "--listen" },
        { flag: "upstream", value: `127.0.0.1:${upstream.port}`, source: "--upstream" },
        { flag: "admin", value: `127.0.0.1:${first.admin.port}`, source: "--admin" },
      ],
    });
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
    await expect(startProxy(config, { logger })).rejects.toMatchObject({
      code: "LISTEN_FAILED",
      message: expect.stringMatching(new RegExp(`admin server cannot listen on 127\\.0\\.0\\.1:${first.admin.port}: .*EADDRINUSE.*--admin`)),
    });
    // The listener it had bound before the admin server failed is closed again.
    const bound = lines.find((l) => l.msg === "listening");
    expect(bound).toBeDefined();
    await expect(connectClient(Number(bound?.port))).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });
});
