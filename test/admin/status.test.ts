// /status.json and the status page at /: what they show of listeners,
// upstreams, live and closed sessions, in one process and merged across the
// CLI's workers; the page's headers and its escaping.

import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { CLOSED_RING_SIZE, StatusBook } from "../../src/admin/status.js";
import { escapeHtml, renderStatusPage, type StatusPageReport } from "../../src/admin/status-page.js";
import { CloseReason } from "../../src/proxy/session/close-reason.js";
import { startAdminProxy } from "../helpers/admin-proxy.js";
import { httpGet } from "../helpers/http.js";
import { startLocalProxy } from "../helpers/local-proxy.js";
import { poll } from "../helpers/poll.js";
import { startAdminSession } from "../helpers/proxied-session.js";
import { connectClient, startServer } from "../helpers/tcp.js";

type Report = StatusPageReport & { sessions: { connections: { worker?: number }[] } };

const MARKUP = "<img src=x onerror=alert(1)>";

describe("/status.json", () => {
  it("shows a live session with both legs' TCP_INFO, then the closed session with its reason in the ring and the counts", async () => {
    const p = await startAdminSession();
    await p.establish();
    const live = JSON.parse((await p.get("/status.json")).body) as Report;
    expect(live.listeners).toEqual([
      expect.objectContaining({
        name: "default",
        address: `127.0.0.1:${p.port}`,
        accepting: true,
        workers: 1,
        active: 1,
        accepted: 1,
        upstreams: [expect.objectContaining({ state: "ok", consecutiveFailures: 0, cooldownUntil: null })],
      }),
    ]);
    expect(live.sessions.total).toBe(1);
    const session = live.sessions.connections[0];
    expect(session).toMatchObject({ state: "established", bytesFromClient: 1 });
    expect(session?.legs.client.tcpInfo).toMatchObject({ state: "ESTABLISHED", keepaliveProbesSent: 0 });
    expect(session?.legs.upstream?.tcpInfo).toMatchObject({ state: "ESTABLISHED" });

    p.client.end();
    p.server.end();
    const closed = await p.nextClosed();
    const after = JSON.parse((await p.get("/status.json")).body) as Report;
    expect(after.sessions.total).toBe(0);
    expect(after.closed).toEqual([
      expect.objectContaining({ id: closed.sessionId, listener: "default", reason: closed.reason, side: closed.side, errno: null, bytesFromClient: 1 }),
    ]);
    expect(after.listeners[0]?.closes).toEqual({ total: { [closed.reason]: 1 }, last5m: { [closed.reason]: 1 } });
  });

  it("shows an upstream that refused connects as failing, with its consecutive failures", async () => {
    const hole = createServer();
    await new Promise<void>((resolve) => hole.listen(0, "127.0.0.1", resolve));
    const port = (hole.address() as { port: number }).port;
    await new Promise<void>((resolve) => hole.close(() => resolve()));
    const p = await startAdminProxy({ upstream: `127.0.0.1:${port}` });
    const client = await connectClient(p.port);
    client.on("error", () => {});
    await p.nextClosed();
    const report = JSON.parse((await p.get("/status.json")).body) as Report;
    expect(report.listeners[0]?.upstreams).toEqual([{ address: `127.0.0.1:${port}`, state: "failing", consecutiveFailures: 1, cooldownUntil: null }]);
    expect(report.closed[0]).toMatchObject({ reason: "upstream_connect_failed", errno: "ECONNREFUSED", upstream: `127.0.0.1:${port}` });
  });

  it("is gzipped for a client that accepts it, as browsers do", async () => {
    const p = await startAdminSession();
    const { gunzipSync } = await import("node:zlib");
    const { request } = await import("node:http");
    const raw = await new Promise<{ headers: Record<string, unknown>; body: Buffer }>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port: p.admin.port, path: "/status.json", agent: false, headers: { "accept-encoding": "gzip" } }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
      });
      req.on("error", reject);
      req.end();
    });
    expect(raw.headers["content-encoding"]).toBe("gzip");
    expect(raw.headers.vary).toBe("Accept-Encoding");
    const report = JSON.parse(gunzipSync(raw.body).toString("utf8")) as Report;
    expect(report.sessions.total).toBe(1);
  });

  it("answers 400 for a limit beyond 10000 and filters by listener", async () => {
    const p = await startAdminSession();
    expect((await p.get("/status.json?limit=10001")).status).toBe(400);
    const none = JSON.parse((await p.get("/status.json?listener=other")).body) as Report;
    expect(none.sessions.total).toBe(0);
    const capped = JSON.parse((await p.get("/status.json?limit=0")).body) as Report;
    expect([capped.sessions.total, capped.sessions.returned]).toEqual([1, 0]);
  });

  it("merges the workers' views under the supervisor: each session with its worker, each listener with its worker count", { timeout: 30_000 }, async () => {
    const upstream = await startServer();
    const proxy = await startLocalProxy(["--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${upstream.port}`, "--admin", "127.0.0.1:0", "--workers", "2"]);
    const admin = { port: await proxy.adminPort() };
    const clients = await Promise.all(Array.from({ length: 8 }, () => connectClient(proxy.port)));
    const report = await poll(
      async () => {
        const r = JSON.parse((await httpGet(admin, "/status.json")).body) as Report;
        return r.sessions.total === clients.length ? r : undefined;
      },
      10_000,
      "eight sessions in /status.json",
    );
    expect(report.listeners).toEqual([expect.objectContaining({ name: "default", workers: 2, active: 8, accepted: 8 })]);
    const workers = new Set(report.sessions.connections.map((c) => c.worker));
    expect([...workers].every((w) => w === 1 || w === 2)).toBe(true);
    for (const c of clients) c.resetAndDestroy();
    const closed = await poll(
      async () => {
        const r = JSON.parse((await httpGet(admin, "/status.json")).body) as Report;
        return r.closed.length === clients.length ? r.closed : undefined;
      },
      10_000,
      "eight closed sessions",
    );
    expect(closed.every((c) => c.worker === 1 || c.worker === 2)).toBe(true);
  });
});

describe("the closed-sessions ring", () => {
  it(`keeps only the last ${CLOSED_RING_SIZE} closed sessions, newest first, and counts every close`, () => {
    let now = 1_000_000;
    const book = new StatusBook(() => now);
    for (let i = 0; i < CLOSED_RING_SIZE + 50; i++) {
      book.hooks.sessionClosed({
        sessionId: `s-${i}`,
        listener: "pg",
        client: "10.0.0.1:1",
        upstream: "10.0.0.2:5432",
        reason: i % 2 === 0 ? CloseReason.ClientEof : CloseReason.UpstreamTimeout,
        side: i % 2 === 0 ? "client" : "upstream",
        clean: i % 2 === 0,
        errno: i % 2 === 0 ? undefined : "ETIMEDOUT",
        bytesFromClient: i,
        bytesFromUpstream: i,
        durationMs: 10,
      });
      now += 2_000;
    }
    const ring = book.recentlyClosed();
    expect(ring).toHaveLength(CLOSED_RING_SIZE);
    expect(ring[0]?.id).toBe(`s-${CLOSED_RING_SIZE + 49}`);
    expect(ring.at(-1)?.id).toBe("s-50");
    const counts = book.countsOf("pg").closes;
    expect(counts.total).toEqual({ client_eof: 125, upstream_timeout: 125 });
    // 2 s apart: about the last 150 closes fall within the last five minutes.
    const recent = Object.values(counts.last5m).reduce((a, b) => a + b, 0);
    expect(recent).toBeGreaterThanOrEqual(145);
    expect(recent).toBeLessThanOrEqual(155);
    now += 10 * 60_000;
    expect(book.countsOf("pg").closes.last5m).toEqual({});
  });
});

describe("the status page", () => {
  it("is served with a strict CSP and nosniff, and its snapshot shows the live session without JavaScript", async () => {
    const p = await startAdminSession();
    await p.establish();
    const res = await p.get("/");
    expect(res.status).toBe(200);
    expect(res.headers["content-security-policy"]).toMatch(/^default-src 'self'(;|$)/);
    expect(res.headers["x-content-type-options"]).toBe("nosniff");
    expect(res.headers["content-type"]).toBe("text/html; charset=utf-8");
    const id = [...p.proxy.sessions()][0]?.id ?? "";
    expect(res.body).toContain(`<tr data-session-id="${id}">`);
    expect(res.body).toMatch(/<script src="\/status\.js" defer><\/script>/);
    // No inline script or style, nothing from another origin.
    expect(res.body).not.toMatch(/<script>|<style|style=|https?:\/\//);
    for (const asset of ["/status.js", "/status.css"]) {
      const a = await p.get(asset);
      expect(a.status).toBe(200);
      expect(a.headers["x-content-type-options"]).toBe("nosniff");
      expect(a.body).not.toMatch(/https?:\/\//);
    }
    // The script never inserts HTML.
    expect((await p.get("/status.js")).body).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
  });

  it("inserts every value as text: markup in a field is escaped, never parsed", () => {
    const report: StatusPageReport = {
      generatedAt: "2026-01-01T00:00:00.000Z",
      draining: false,
      listeners: [
        {
          name: MARKUP,
          address: MARKUP,
          accepting: true,
          workers: 1,
          upstreams: [{ address: MARKUP, state: "ok", consecutiveFailures: 0, cooldownUntil: null }],
          active: 1,
          accepted: 1,
          closes: { total: { [MARKUP]: 1 }, last5m: {} },
        },
      ],
      closed: [
        {
          id: MARKUP,
          listener: MARKUP,
          client: MARKUP,
          upstream: MARKUP,
          reason: MARKUP,
          side: MARKUP,
          errno: MARKUP,
          closedAt: MARKUP,
          durationMs: 1,
          bytesFromClient: 0,
          bytesFromUpstream: 0,
        },
      ],
      sessions: {
        total: 1,
        returned: 1,
        truncated: false,
        connections: [
          {
            id: `"${MARKUP}`,
            listener: MARKUP,
            client: MARKUP,
            upstream: MARKUP,
            state: "established",
            startedAt: MARKUP,
            ageMs: 1,
            idleMs: null,
            lastActivityAt: null,
            bytesFromClient: 0,
            bytesFromUpstream: 0,
            legs: { client: { options: null, tcpInfo: null }, upstream: null },
            tls: { protocol: "TLSv1.3", peerSubject: `CN=${MARKUP}` },
          },
        ],
      },
    };
    const html = renderStatusPage(report);
    expect(html).not.toContain("<img");
    expect(html).toContain(escapeHtml(MARKUP));
    expect(html).toContain(`data-session-id="&quot;&lt;img`);
    expect(html).toContain(`CN=&lt;img src=x onerror=alert(1)&gt;`);
  });
});
