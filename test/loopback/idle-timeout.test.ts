import type { Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { loadLibc } from "../../src/net/libc.js";
import { waitUntil } from "../helpers/in-process-proxy.js";
import { startProxiedSession } from "../helpers/proxied-session.js";

const TIMEOUT_MS = 1_500;

/** Writes a chunk every 300 ms for `forMs`: never quiet for the timeout. */
async function trickle(from: Socket, forMs: number): Promise<void> {
  const until = Date.now() + forMs;
  while (Date.now() < until) {
    from.write(Buffer.alloc(512, 7));
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

describe("idle timeout", () => {
  it("resets both legs of a session with no byte either way for --idle-timeout", async () => {
    const { atClient, atServer, nextClosed, establish } = await startProxiedSession({ "idle-timeout": `${TIMEOUT_MS}ms` });
    await establish();
    const quietFrom = Date.now();
    await waitUntil(() => atClient.closed && atServer.closed, TIMEOUT_MS + 5_000, "both legs reset");
    const summary = await nextClosed();
    expect(summary.reason).toBe("proxy_idle_timeout");
    expect(summary.side).toBe("proxy");
    expect(atClient.errorCode).toBe("ECONNRESET");
    expect(atServer.errorCode).toBe("ECONNRESET");
    expect(atClient.closedAt - quietFrom).toBeGreaterThanOrEqual(TIMEOUT_MS - 100);
    expect(atClient.closedAt - quietFrom).toBeLessThanOrEqual(TIMEOUT_MS + 1_000);
  });

  // Bytes moving one way only are activity: an upstream that streams to a
  // client that never writes (a feed, a long download) must not be cut, nor
  // an upload the upstream never answers until it ends.
  for (const direction of ["upstream → client", "client → upstream"] as const) {
    it(`keeps a session whose bytes move only ${direction}, and cuts it once they stop`, async () => {
      const { client, server, atClient, atServer, closed, nextClosed, establish } = await startProxiedSession({ "idle-timeout": `${TIMEOUT_MS}ms` });
      await establish();
      const toClient = direction === "upstream → client";
      await trickle(toClient ? server : client, 2 * TIMEOUT_MS);
      expect(closed).toEqual([]);
      expect(toClient ? atClient.bytes : atServer.bytes).toBeGreaterThanOrEqual(5 * 512);
      const quietFrom = Date.now();
      await waitUntil(() => atClient.closed, TIMEOUT_MS + 5_000, "the cut after the bytes stopped");
      expect(atClient.closedAt - quietFrom).toBeGreaterThanOrEqual(TIMEOUT_MS - 400);
      expect(atClient.closedAt - quietFrom).toBeLessThanOrEqual(TIMEOUT_MS + 1_000);
      expect((await nextClosed()).reason).toBe("proxy_idle_timeout");
    });
  }

  // The proxy reads nothing while its kernel still sends what it read long
  // ago to a client that reads slowly: the bytes are moving, so it is not idle.
  it("keeps a session whose slow client is still draining what the upstream sent at the start", async () => {
    const idleMs = 1_000;
    const { client, server, atClient, closed, nextClosed, establish } = await startProxiedSession({ "idle-timeout": `${idleMs}ms` });
    await establish();
    // A small receive window, so what the client has not read stays in the proxy's kernel.
    const fd = (client as unknown as { _handle: { fd: number } })._handle.fd;
    expect(loadLibc().setInt(fd, SOL_SOCKET, SO_RCVBUF, 4096)).toBe(0);
    client.pause();
    const total = 256 * 1024;
    server.write(Buffer.alloc(total, 5));
    // One chunk every 300 ms for 3.5 s: more than three timeouts of reading.
    const sipUntil = Date.now() + 3_500;
    const pauseAfterOne = (): void => {
      client.pause();
    };
    while (Date.now() < sipUntil) {
      client.once("data", pauseAfterOne);
      client.resume();
      await new Promise((resolve) => setTimeout(resolve, 300));
      client.off("data", pauseAfterOne);
      client.pause();
    }
    expect(closed).toEqual([]);
    expect(atClient.bytes).toBeGreaterThan(0);
    expect(atClient.bytes).toBeLessThan(total); // still draining: the case is real
    client.resume();
    await waitUntil(() => atClient.bytes === total || undefined, 10_000, "the rest at the client");
    const quietFrom = Date.now();
    await waitUntil(() => atClient.closed, idleMs + 5_000, "the cut once everything was read");
    expect(atClient.closedAt - quietFrom).toBeLessThanOrEqual(idleMs + 1_000);
    expect((await nextClosed()).reason).toBe("proxy_idle_timeout");
  });
});

const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
