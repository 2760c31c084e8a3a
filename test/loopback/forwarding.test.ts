import { describe, expect, it } from "vitest";
import { startTestProxy, waitUntil } from "../helpers/in-process-proxy.js";
import { startProxiedSession } from "../helpers/proxied-session.js";
import { connectClient, observe, sendRandom, startServer } from "../helpers/tcp.js";

const MB = 1024 * 1024;

describe("forwarding on loopback", () => {
  it("carries 10 MB each way intact and ends with both FINs passed on", async () => {
    const { client, server, atClient, atServer, nextClosed } = await startProxiedSession();

    const [up, down] = await Promise.all([sendRandom(client, 10 * MB), sendRandom(server, 10 * MB)]);
    client.end();
    server.end();
    await waitUntil(() => atServer.ended && atClient.ended && atServer.closed && atClient.closed, 20_000, "both ends closed");

    expect(atServer.hash.digest("hex")).toBe(up);
    expect(atClient.hash.digest("hex")).toBe(down);
    expect(atServer.errorCode).toBeUndefined();
    expect(atClient.errorCode).toBeUndefined();
    const summary = await nextClosed();
    expect(summary.clean).toBe(true);
    expect(["client_eof", "upstream_eof"]).toContain(summary.reason);
    expect(summary.bytesFromClient).toBe(10 * MB);
    expect(summary.bytesFromUpstream).toBe(10 * MB);
  });

  it("passes a client FIN on as a half-close while the upstream keeps sending", async () => {
    const { client, server, atClient, atServer, nextClosed } = await startProxiedSession();

    client.end("last words");
    await waitUntil(() => atServer.ended, 5000, "the FIN at the upstream");
    expect(atServer.bytes).toBe("last words".length);
    // The other direction is still open: 2 MB flow after the client's FIN.
    const down = await sendRandom(server, 2 * MB);
    server.end();
    await waitUntil(() => atClient.ended && atClient.closed, 10_000, "the client to get everything and a FIN");
    expect(atClient.hash.digest("hex")).toBe(down);
    expect(atClient.errorCode).toBeUndefined();
    const summary = await nextClosed();
    expect(summary.reason).toBe("client_eof");
    expect(summary.side).toBe("client");
  });

  it("passes an upstream FIN on as a half-close while the client keeps sending", async () => {
    const { client, server, atClient, atServer, nextClosed } = await startProxiedSession();

    server.end("bye");
    await waitUntil(() => atClient.ended, 5000, "the FIN at the client");
    const up = await sendRandom(client, 2 * MB);
    client.end();
    await waitUntil(() => atServer.ended && atServer.closed && atClient.closed, 10_000, "both closed");
    expect(atServer.hash.digest("hex")).toBe(up);
    expect(atServer.errorCode).toBeUndefined();
    const summary = await nextClosed();
    expect(summary.reason).toBe("upstream_eof");
  });

  it("resets the client leg when the upstream resets", async () => {
    const { server, atClient, establish, nextClosed } = await startProxiedSession();
    await establish(); // a reset before the upstream's 'connect' would be a connect failure
    server.resetAndDestroy();
    await waitUntil(() => atClient.closed, 2000, "the client to close");
    expect(atClient.errorCode).toBe("ECONNRESET");
    const summary = await nextClosed();
    expect(summary.reason).toBe("upstream_reset");
    expect(summary.errno).toBe("ECONNRESET");
  });

  it("resets the upstream leg when the client resets", async () => {
    const { client, atServer, establish, nextClosed } = await startProxiedSession();
    await establish();
    client.resetAndDestroy();
    await waitUntil(() => atServer.closed, 2000, "the upstream to close");
    expect(atServer.errorCode).toBe("ECONNRESET");
    expect((await nextClosed()).reason).toBe("client_reset");
  });

  it("resets the client within 1 s when the upstream port is closed", async () => {
    const closedPort = await startServer().then(async ({ server, port }) => {
      await new Promise((r) => server.close(r));
      return port;
    });
    const { port, nextClosed } = await startTestProxy({ upstream: `127.0.0.1:${closedPort}` });
    const started = Date.now();
    const client = await connectClient(port);
    const atClient = observe(client);
    await waitUntil(() => atClient.closed, 1000, "the client reset");
    expect(atClient.errorCode).toBe("ECONNRESET");
    expect(Date.now() - started).toBeLessThan(1000);
    const summary = await nextClosed();
    expect(summary.reason).toBe("upstream_connect_failed");
    expect(summary.errno).toBe("ECONNREFUSED");
  });

  it("resets the client when the upstream name does not resolve", async () => {
    const { port, nextClosed } = await startTestProxy({ upstream: "no-such-host.invalid:5432" });
    const client = await connectClient(port);
    const atClient = observe(client);
    await waitUntil(() => atClient.closed, 5000, "the client reset");
    expect(atClient.errorCode).toBe("ECONNRESET");
    const summary = await nextClosed();
    expect(summary.reason).toBe("upstream_connect_failed");
    expect(summary.errno).toMatch(/ENOTFOUND|EAI_AGAIN/);
  });

  it("forwards over IPv6 loopback", async () => {
    const upstream = await startServer();
    const { port } = await startTestProxy({ listen: "[::1]:0", upstream: `127.0.0.1:${upstream.port}` });
    const { connect } = await import("node:net");
    const client = connect({ host: "::1", port });
    const server = await upstream.accepted();
    const atServer = observe(server);
    client.end("v6");
    await waitUntil(() => atServer.ended, 2000, "data over v6");
    expect(atServer.bytes).toBe(2);
    client.destroy();
  });

  it("leaves nothing of a closed session behind", async () => {
    const upstream = await startServer();
    const { proxy, port, nextClosed } = await startTestProxy({ upstream: `127.0.0.1:${upstream.port}` });
    for (let i = 0; i < 20; i++) {
      const client = await connectClient(port);
      const server = await upstream.accepted();
      if (i % 2 === 0) client.resetAndDestroy();
      else {
        client.end();
        server.end();
      }
      await nextClosed();
    }
    expect(proxy.sessionTotal).toBe(0);
  });
});
