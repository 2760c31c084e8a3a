// /connections: every live session with both legs as the kernel reports
// them at the moment of the request.

import { request } from "node:http";
import type { Socket } from "node:net";
import { describe, expect, it, onTestFinished } from "vitest";
import type { ConnectionsReport } from "../../src/admin/connections.js";
import { startAdminProxy } from "../helpers/admin-proxy.js";
import { waitUntil } from "../helpers/in-process-proxy.js";
import { poll } from "../helpers/poll.js";
import { connectClient, observe, startServer } from "../helpers/tcp.js";

// Different on each leg, and different from the defaults, so that a leg
// showing the other's (or the kernel's default) values fails.
const LEG_FLAGS = {
  "client-keepalive-idle": "7s",
  "client-keepalive-interval": "3s",
  "client-keepalive-count": "4",
  "client-user-timeout": "25s",
  "upstream-keepalive-idle": "11s",
  "upstream-keepalive-interval": "2s",
  "upstream-keepalive-count": "5",
  "upstream-user-timeout": "21s",
};

async function connections(p: Awaited<ReturnType<typeof startAdminProxy>>, query = ""): Promise<ConnectionsReport> {
  const res = await p.get(`/connections${query}`);
  if (res.status !== 200) throw new Error(`/connections${query} answered ${res.status}: ${res.body}`);
  return JSON.parse(res.body) as ConnectionsReport;
}

/** Sessions enough that one listing spans many slices of the admin server's scheduler. */
const MANY = 1_000;

/** A /connections GET whose body arrives in pieces: `onFirstPiece` runs when the first one does. */
function streamedGet(port: number, path: string, onFirstPiece: () => void): Promise<{ status: number; body: string; finishedAt: number }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (piece: string) => {
        if (body === "") onFirstPiece();
        body += piece;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, finishedAt: performance.now() }));
      res.on("error", reject);
    });
    onTestFinished(() => {
      req.destroy();
    });
    req.on("error", reject);
    req.end();
  });
}

/** Opens `count` sessions through the proxy and waits until the proxy holds them all. */
async function openSessions(p: Awaited<ReturnType<typeof startAdminProxy>>, count: number): Promise<Socket[]> {
  const clients = await Promise.all(Array.from({ length: count }, () => connectClient(p.port)));
  await waitUntil(() => p.proxy.sessionTotal === count || undefined, 30_000, `${count} sessions`);
  return clients;
}

function addressOf(socket: Socket): string {
  return `${socket.localAddress}:${socket.localPort}`;
}

describe("/connections", () => {
  it("shows each leg's keepalive options read back from the kernel during a live session, and drops the session once it ends", async () => {
    const upstream = await startServer();
    const p = await startAdminProxy({ upstream: `127.0.0.1:${upstream.port}`, ...LEG_FLAGS });
    const client = await connectClient(p.port);
    const server = await upstream.accepted();
    const atServer = observe(server);
    client.write("12345");
    await waitUntil(() => atServer.bytes === 5, 5000, "5 bytes at the upstream");
    server.write("123");

    const report = await poll(
      async () => {
        const r = await connections(p);
        return r.connections[0]?.bytesFromUpstream === 3 ? r : undefined;
      },
      5000,
      "the upstream's 3 bytes in /connections",
      20,
    );
    expect(report).toMatchObject({ total: 1, returned: 1, limit: 100, truncated: false });
    const [session] = report.connections;
    expect(session).toMatchObject({
      listener: "default",
      client: addressOf(client),
      upstream: `127.0.0.1:${upstream.port}`,
      state: "established",
      bytesFromClient: 5,
      bytesFromUpstream: 3,
    });
    expect(session?.ageMs).toBeGreaterThanOrEqual(0);
    expect(session?.idleMs).toBeGreaterThanOrEqual(0);
    expect(session?.legs.client.options).toEqual({
      keepalive: true,
      keepaliveIdleSeconds: 7,
      keepaliveIntervalSeconds: 3,
      keepaliveCount: 4,
      userTimeoutMs: 25_000,
      noDelay: true,
    });
    expect(session?.legs.upstream?.options).toEqual({
      keepalive: true,
      keepaliveIdleSeconds: 11,
      keepaliveIntervalSeconds: 2,
      keepaliveCount: 5,
      userTimeoutMs: 21_000,
      noDelay: true,
    });
    for (const leg of [session?.legs.client, session?.legs.upstream]) {
      expect(leg?.tcpInfo).toMatchObject({ state: "ESTABLISHED", unackedSegments: 0, retransmits: 0, keepaliveProbesSent: 0 });
      expect(leg?.tcpInfo?.rttUs).toBeGreaterThan(0);
    }

    client.end();
    server.end();
    await p.nextClosed();
    // Gone the moment the session closed: no poll needed.
    expect(await connections(p)).toEqual({ total: 0, returned: 0, limit: 100, truncated: false, connections: [] });
  });

  it("lists at most `limit` sessions, counts them all in `total`, and refuses a bad limit", async () => {
    const upstream = await startServer();
    const p = await startAdminProxy({ upstream: `127.0.0.1:${upstream.port}` });
    const clients: Socket[] = [];
    for (let i = 0; i < 3; i++) {
      clients.push(await connectClient(p.port));
      await upstream.accepted();
    }
    await waitUntil(() => p.proxy.sessionTotal === 3 || undefined, 5000, "3 sessions");

    const two = await connections(p, "?limit=2");
    expect(two).toMatchObject({ total: 3, returned: 2, limit: 2, truncated: true });
    // In accept order: the oldest sessions first.
    expect(two.connections.map((c) => c.client)).toEqual(clients.slice(0, 2).map(addressOf));
    expect(await connections(p, "?limit=0")).toEqual({ total: 3, returned: 0, limit: 0, truncated: true, connections: [] });
    expect((await connections(p, "?listener=default")).total).toBe(3);
    expect((await connections(p, "?listener=other")).total).toBe(0);
    for (const bad of ["-1", "abc", "10001", "1.5"]) {
      const res = await p.get(`/connections?limit=${bad}`);
      expect(res.status).toBe(400);
      expect(JSON.parse(res.body).error).toMatch(/limit must be a whole number from 0 to 10000/);
    }
  });

  it("shows sessions that close while the listing runs as closed with null legs, in a well-formed answer", async () => {
    const upstream = await startServer();
    const p = await startAdminProxy({ upstream: `127.0.0.1:${upstream.port}` });
    const clients = await openSessions(p, MANY);

    // The head (with the counts) comes first; every client resets as soon as it arrives.
    const res = await streamedGet(p.admin.port, `/connections?limit=${MANY}`, () => {
      for (const c of clients) c.resetAndDestroy();
    });
    expect(res.status).toBe(200);
    const report = JSON.parse(res.body) as ConnectionsReport;
    expect(report).toMatchObject({ total: MANY, returned: MANY, limit: MANY, truncated: false });
    expect(report.connections).toHaveLength(MANY);
    const closed = report.connections.filter((c) => c.state === "closed");
    expect(closed.length).toBeGreaterThan(0);
    for (const c of closed) expect(c.legs.client).toEqual({ options: null, tcpInfo: null });
    await waitUntil(() => p.proxy.sessionTotal === 0 || undefined, 10_000, "every session to close");
    expect(p.logs.filter((l) => l.level === "error")).toEqual([]);
  });

  it("answers /healthz and a second listing while a long listing is in progress", async () => {
    const upstream = await startServer();
    const p = await startAdminProxy({ upstream: `127.0.0.1:${upstream.port}` });
    await openSessions(p, MANY);

    let health: Promise<{ status: number; at: number }> | undefined;
    const long = streamedGet(p.admin.port, `/connections?limit=${MANY}`, () => {
      health = p.get("/healthz").then((r) => ({ status: r.status, at: performance.now() }));
    });
    const second = streamedGet(p.admin.port, "/connections?limit=5", () => {});
    const [first, other] = await Promise.all([long, second]);
    const probe = await health;
    // /healthz was answered between two slices of the listing, not after it.
    expect(probe?.status).toBe(200);
    expect(probe?.at).toBeLessThan(first.finishedAt);
    expect((JSON.parse(first.body) as ConnectionsReport).returned).toBe(MANY);
    expect(JSON.parse(other.body) as ConnectionsReport).toMatchObject({ total: MANY, returned: 5, truncated: true });
  });
});
