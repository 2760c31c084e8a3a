import { describe, expect, it } from "vitest";
import { waitUntil } from "../helpers/in-process-proxy.js";
import { startProxiedSession } from "../helpers/proxied-session.js";

const TIMEOUT_MS = 2_000;

describe("half-close timeout", () => {
  it("resets both legs once nothing moves after the client's FIN for --half-close-timeout", async () => {
    const { client, server, atClient, atServer, nextClosed } = await startProxiedSession({ "half-close-timeout": `${TIMEOUT_MS}ms` });

    const finAt = Date.now();
    client.end("request");
    await waitUntil(() => atServer.ended, 5_000, "the FIN at the upstream");
    // The upstream never answers and never closes.
    await waitUntil(() => atClient.closed, TIMEOUT_MS + 5_000, "the client leg reset");
    const summary = await nextClosed();
    // A peer that only waits notices a reset when it next writes: the
    // proxy's leg is gone (a reset, though the proxy had already sent its FIN).
    server.write("late answer");
    await waitUntil(() => atServer.closed, 5_000, "the upstream leg reset");
    expect(summary.reason).toBe("proxy_half_close_timeout");
    expect(summary.side).toBe("proxy");
    expect(atClient.errorCode).toBe("ECONNRESET");
    expect(["ECONNRESET", "EPIPE"]).toContain(atServer.errorCode);
    expect(Math.abs(atClient.closedAt - finAt - TIMEOUT_MS)).toBeLessThanOrEqual(1_000);
  });

  it("keeps a half-closed session whose other direction keeps streaming, and cuts it once that stops", async () => {
    const { client, server, atClient, atServer, closed } = await startProxiedSession({ "half-close-timeout": `${TIMEOUT_MS}ms` });

    client.end();
    await waitUntil(() => atServer.ended, 5_000, "the FIN at the upstream");
    // Twice the timeout of answer, a chunk every 300 ms: never quiet for the timeout.
    const streamUntil = Date.now() + 2 * TIMEOUT_MS;
    while (Date.now() < streamUntil) {
      server.write(Buffer.alloc(1024, 1));
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    expect(closed).toEqual([]);
    expect(atClient.bytes).toBeGreaterThan(5 * 1024);
    const quietFrom = Date.now();
    await waitUntil(() => atClient.closed, TIMEOUT_MS + 5_000, "the cut after the stream stopped");
    expect(atClient.closedAt - quietFrom).toBeGreaterThanOrEqual(TIMEOUT_MS - 400);
    expect(atClient.closedAt - quietFrom).toBeLessThanOrEqual(TIMEOUT_MS + 1_000);
    await waitUntil(() => closed[0], 5_000, "the session summary");
    expect(closed[0]?.reason).toBe("proxy_half_close_timeout");
  });

  it("never cuts a half-closed session when the timeout is off (the default)", async () => {
    const { client, atServer, closed } = await startProxiedSession();
    client.end();
    await waitUntil(() => atServer.ended, 5_000, "the FIN at the upstream");
    await new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS + 500));
    expect(closed).toEqual([]);
  });
});
