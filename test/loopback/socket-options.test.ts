import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { loadLibc } from "../../src/net/libc.js";
import { SocketOptions } from "../../src/net/socket-options.js";
import { startProxiedSession } from "../helpers/proxied-session.js";

describe(`socket options on Node ${process.version}`, () => {
  it("gives each leg its own keepalive and user timeout, as read back from the kernel", async () => {
    const { proxy, port, client, server, establish } = await startProxiedSession({
      "client-keepalive-idle": "7s",
      "client-keepalive-interval": "3s",
      "client-keepalive-count": "4",
      "upstream-keepalive-idle": "11s",
      "upstream-keepalive-interval": "2s",
      "upstream-keepalive-count": "5",
      "upstream-user-timeout": "2500ms",
    });
    await establish();

    const [session] = [...proxy.sessions()];
    if (!session?.upstreamSocket) throw new Error("no established session");
    const options = new SocketOptions(loadLibc());
    expect(options.read(session.client)).toEqual({
      keepalive: true,
      keepaliveIdleSeconds: 7,
      keepaliveIntervalSeconds: 3,
      keepaliveCount: 4,
      userTimeoutMs: 7000 + 3000 * 4, // derived: idle + interval × count
      noDelay: true,
    });
    expect(options.read(session.upstreamSocket)).toEqual({
      keepalive: true,
      keepaliveIdleSeconds: 11,
      keepaliveIntervalSeconds: 2,
      keepaliveCount: 5,
      userTimeoutMs: 2500,
      noDelay: true,
    });

    // ss shows the kernel's keepalive timer on both of the proxy's legs.
    // Filtered to this session's ports: the machine may hold many other connections.
    const filter = `( sport = :${port} or dport = :${server.localPort} )`;
    const ss = execFileSync("ss", ["-tnoH", "state", "established", filter], { encoding: "utf8", maxBuffer: 16 * 1024 * 1024 });
    const line = (local: string, peer: string): string | undefined =>
      ss.split("\n").find((l) => {
        const [, , localCol, peerCol] = l.trim().split(/\s+/);
        return localCol === local && peerCol === peer;
      });
    expect(line(`127.0.0.1:${port}`, `127.0.0.1:${client.localPort}`)).toMatch(/timer:\(keepalive,[\d.]+[a-z]+,0\)/);
    expect(line(`127.0.0.1:${session.upstreamSocket.localPort}`, `127.0.0.1:${server.localPort}`)).toMatch(/timer:\(keepalive,[\d.]+[a-z]+,0\)/);
  });

  it("turns keepalive off on one leg only", async () => {
    const { proxy, establish } = await startProxiedSession({ "client-keepalive": false, nodelay: false });
    await establish();
    const [session] = [...proxy.sessions()];
    if (!session?.upstreamSocket) throw new Error("no established session");
    const options = new SocketOptions(loadLibc());
    expect(options.read(session.client)).toMatchObject({ keepalive: false, userTimeoutMs: 0, noDelay: false });
    expect(options.read(session.upstreamSocket)).toMatchObject({ keepalive: true, keepaliveIdleSeconds: 60, userTimeoutMs: 90_000 });
  });

  it("reports TCP_INFO for a live leg", async () => {
    const { proxy, establish } = await startProxiedSession();
    await establish();
    const [session] = [...proxy.sessions()];
    if (!session) throw new Error("no session");
    const info = new SocketOptions(loadLibc()).tcpInfo(session.client);
    expect(info?.state).toBe("ESTABLISHED");
    expect(info?.unackedSegments).toBe(0);
    expect(info?.rttUs).toBeGreaterThan(0);
  });
});
