import { connect, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { startTestProxy, waitUntil } from "../helpers/in-process-proxy.js";
import { connectClient, observe, startServer } from "../helpers/tcp.js";
import { freePort } from "../helpers/haproxy.js";

function config(listener: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { listeners: [{ name: "t", listen: "127.0.0.1:0", ...listener }], ...extra };
}

/** Sends a byte from the client and waits for it at the upstream: proof the session is established. */
async function roundTrip(client: Socket, server: Socket): Promise<void> {
  const atServer = observe(server);
  client.write("x");
  await waitUntil(() => atServer.bytes === 1, 3000, "a byte through the proxy");
}

describe("upstream failover", () => {
  it("fails over to the second upstream when the first refuses, and skips the first during its cool-down", async () => {
    const dead = await freePort();
    const live = await startServer();
    const { port, proxy, attempts } = await startTestProxy(
      {},
      config({
        upstream: { addresses: [`127.0.0.1:${dead}`, `127.0.0.1:${live.port}`], failureThreshold: 1, cooldown: "700ms", retryBackoff: "0ms" },
      }),
    );
    const listener = [...proxy.listeners.values()][0];
    if (!listener) throw new Error("no listener");
    const started = Date.now();
    const first = await connectClient(port);
    await roundTrip(first, await live.accepted());
    const failoverMs = Date.now() - started;
    console.log(`failover to the second upstream took ${failoverMs} ms (connect refused on the first)`);
    expect(failoverMs).toBeLessThan(1000);
    expect(listener.upstreams.inCooldown(`127.0.0.1:${dead}`)).toBe(true);
    expect(attempts).toEqual(["refused", "ok"]);

    // During the cool-down the dead address is tried last, so the session connects at the first attempt.
    const before = attempts.length;
    const second = await connectClient(port);
    await roundTrip(second, await live.accepted());
    expect(attempts.slice(before)).toEqual(["ok"]);

    // After the cool-down the first address is tried again (and fails again into cool-down).
    await waitUntil(() => !listener.upstreams.inCooldown(`127.0.0.1:${dead}`) || undefined, 3000, "the cool-down to pass");
    const third = await connectClient(port);
    await roundTrip(third, await live.accepted());
    expect(attempts.slice(before + 1)).toEqual(["refused", "ok"]);
    expect(listener.upstreams.inCooldown(`127.0.0.1:${dead}`)).toBe(true);
  });

  it("rotates the first choice with round-robin", async () => {
    const a = await startServer();
    const b = await startServer();
    const { port } = await startTestProxy({}, config({ upstream: { addresses: [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`], balance: "round-robin" } }));
    const counts = { a: 0, b: 0 };
    a.server.on("connection", () => counts.a++);
    b.server.on("connection", () => counts.b++);
    for (let i = 0; i < 4; i++) {
      const c = await connectClient(port);
      await waitUntil(() => counts.a + counts.b === i + 1 || undefined, 3000, "an upstream connection");
      c.destroy();
    }
    expect(counts).toEqual({ a: 2, b: 2 });
  });

  it("resets the client after the last retry fails, with the connect failure as reason", async () => {
    const deadA = await freePort();
    const deadB = await freePort();
    const { port, nextClosed } = await startTestProxy({}, config({ upstream: { addresses: [`127.0.0.1:${deadA}`, `127.0.0.1:${deadB}`], retries: 3 } }));
    const client = await connectClient(port);
    const atClient = observe(client);
    await waitUntil(() => atClient.closed, 3000, "the client reset");
    expect(atClient.errorCode).toBe("ECONNRESET");
    expect((await nextClosed()).reason).toBe("upstream_connect_failed");
  });

  it("retries with doubling backoff, and a client that leaves during a backoff ends the retries at once", async () => {
    const deadA = await freePort();
    const deadB = await freePort();
    const { port, attempts, nextClosed } = await startTestProxy(
      {},
      config({ upstream: { addresses: [`127.0.0.1:${deadA}`, `127.0.0.1:${deadB}`], retries: 3, retryBackoff: "200ms" } }),
    );
    const started = Date.now();
    const client = await connectClient(port);
    expect((await nextClosed()).reason).toBe("upstream_connect_failed");
    const elapsedMs = Date.now() - started;
    expect(attempts).toEqual(["refused", "refused", "refused", "refused"]);
    // 200 + 400 + 800 ms of backoff between the four attempts.
    expect(elapsedMs).toBeGreaterThanOrEqual(1_400);
    client.destroy();

    // Attempts at about 0 and 200 ms, the third not before 600 ms: a reset at 350 ms lands in the second backoff.
    const before = attempts.length;
    const leaving = await connectClient(port);
    await new Promise((resolve) => setTimeout(resolve, 350));
    leaving.resetAndDestroy();
    expect((await nextClosed()).reason).toBe("client_reset");
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(attempts.slice(before)).toEqual(["refused", "refused"]);
  });
});

describe("connection limits", () => {
  it("resets the limit+1-th client at once and counts it, leaving the others working", async () => {
    const upstream = await startServer();
    const { port, closed } = await startTestProxy({}, config({ upstream: { address: `127.0.0.1:${upstream.port}` }, maxConnections: 2 }));
    const one = await connectClient(port);
    await roundTrip(one, await upstream.accepted());
    const two = await connectClient(port);
    const twoServer = await upstream.accepted();
    await roundTrip(two, twoServer);

    const atThree = observe(connect(port, "127.0.0.1"));
    await waitUntil(() => atThree.closed, 2000, "the third client reset");
    expect(atThree.errorCode).toBe("ECONNRESET");
    expect(closed.map((s) => s.reason)).toEqual(["proxy_connection_limit"]);

    // The first two still carry data.
    const atTwo = observe(two);
    twoServer.write("still here");
    await waitUntil(() => atTwo.bytes === 10, 2000, "data on a session under the limit");
    // A slot freed is a slot taken again.
    one.resetAndDestroy();
    await waitUntil(() => closed.length === 2 || undefined, 3000, "the first session to close");
    const four = await connectClient(port);
    await roundTrip(four, await upstream.accepted());
  });

  it("applies the process-wide limit across listeners", async () => {
    const upstream = await startServer();
    const { proxy, closed } = await startTestProxy(
      {},
      {
        limits: { maxConnections: 1 },
        listeners: [
          { name: "a", listen: "127.0.0.1:0", upstream: { address: `127.0.0.1:${upstream.port}` } },
          { name: "b", listen: "127.0.0.1:0", upstream: { address: `127.0.0.1:${upstream.port}` } },
        ],
      },
    );
    const [a, b] = [...proxy.listeners.values()].map((l) => l.address()?.port ?? 0);
    const first = await connectClient(a ?? 0);
    await roundTrip(first, await upstream.accepted());
    const atSecond = observe(connect(b ?? 0, "127.0.0.1"));
    await waitUntil(() => atSecond.closed, 2000, "the second client reset");
    expect(closed[0]).toMatchObject({ listener: "b", reason: "proxy_connection_limit" });
  });

  it("ends a session at the maximum session duration", async () => {
    const upstream = await startServer();
    const { port, nextClosed } = await startTestProxy({}, config({ upstream: { address: `127.0.0.1:${upstream.port}` }, maxSessionDuration: "300ms" }));
    const client = await connectClient(port);
    await roundTrip(client, await upstream.accepted());
    const summary = await nextClosed(3000);
    expect(summary.reason).toBe("proxy_max_duration");
    expect(summary.durationMs).toBeGreaterThanOrEqual(290);
  });
});

describe("client access lists", () => {
  async function tryFrom(port: number, host: string, localAddress: string): Promise<"open" | "reset"> {
    const socket = connect({ host, port, localAddress });
    const seen = observe(socket);
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()).once("error", () => resolve()));
    // A denied client is reset at once; an allowed one stays open.
    await new Promise((r) => setTimeout(r, 150));
    socket.destroy();
    return seen.errorCode === "ECONNRESET" ? "reset" : "open";
  }

  it("allows and denies IPv4 and IPv6 clients by CIDR, deny winning", async () => {
    const upstream = await startServer();
    const { port, closed, logs } = await startTestProxy(
      {},
      config({
        listen: "[::]:0",
        upstream: { address: `127.0.0.1:${upstream.port}` },
        access: { allow: ["127.0.0.0/8", "::1/128"], deny: ["127.0.0.3/32"] },
      }),
    );
    expect(await tryFrom(port, "127.0.0.1", "127.0.0.1")).toBe("open");
    expect(await tryFrom(port, "::1", "::1")).toBe("open");
    expect(await tryFrom(port, "127.0.0.3", "127.0.0.3")).toBe("reset");
    expect(await tryFrom(port, "127.0.0.3", "127.0.0.3")).toBe("reset");
    await waitUntil(() => closed.filter((s) => s.reason === "client_denied").length === 2 || undefined, 2000, "two denials counted");
    // Logged once per address per minute, counted every time.
    expect(logs.filter((l) => String(l.msg).startsWith("client denied")).length).toBe(1);
  });

  it("denies IPv6 clients that an IPv4-only allow list does not cover", async () => {
    const upstream = await startServer();
    const { port } = await startTestProxy({}, config({ listen: "[::]:0", upstream: { address: `127.0.0.1:${upstream.port}` }, access: { allow: ["127.0.0.1/32"] } }));
    expect(await tryFrom(port, "::1", "::1")).toBe("reset");
    expect(await tryFrom(port, "127.0.0.1", "127.0.0.1")).toBe("open");
  });
});
