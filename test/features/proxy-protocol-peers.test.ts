import { connect, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { encodeProxyHeader } from "../../src/proxy/admission/proxy-protocol.js";
import { freePort, startHaproxy } from "../helpers/haproxy.js";
import { startTestProxy, waitUntil } from "../helpers/in-process-proxy.js";
import { connectClient, observe, startServer } from "../helpers/tcp.js";

function config(listener: Record<string, unknown>): Record<string, unknown> {
  return { listeners: [{ name: "pp", listen: "127.0.0.1:0", ...listener }] };
}

/**
 * The first accepted upstream connection that carries bytes: HAProxy's
 * readiness probes (see startHaproxy) open empty connections first.
 */
async function acceptedWithData(upstream: { accepted: () => Promise<Socket> }): Promise<{ socket: Socket; bytes: () => Buffer }> {
  for (;;) {
    const socket = await upstream.accepted();
    const received = collect(socket);
    const got = await waitUntil(() => (received.bytes().length > 0 ? true : undefined), 3000, "bytes").catch(() => false);
    if (got) return { socket, bytes: received.bytes };
  }
}

/** Collects what arrives at an accepted upstream socket. */
function collect(socket: Socket): { bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  socket.on("data", (c: Buffer) => chunks.push(c));
  return { bytes: () => Buffer.concat(chunks) };
}

describe("PROXY protocol to the upstream", () => {
  for (const version of ["v1", "v2"] as const) {
    it(`sends a ${version} header the upstream parses byte for byte, then the client's bytes`, async () => {
      const upstream = await startServer();
      const { port } = await startTestProxy({}, config({ upstream: { address: `127.0.0.1:${upstream.port}`, proxyProtocol: version } }));
      const client = await connectClient(port);
      const server = await upstream.accepted();
      const received = collect(server);
      client.write("hello");
      const expected = Buffer.concat([
        encodeProxyHeader(version, { address: "127.0.0.1", port: client.localPort ?? 0 }, { address: "127.0.0.1", port }),
        Buffer.from("hello"),
      ]);
      await waitUntil(() => received.bytes().length >= expected.length || undefined, 3000, "header and payload");
      expect(received.bytes().equals(expected)).toBe(true);
    });
  }

  it("is understood by HAProxy's accept-proxy, which passes the client's address on", async () => {
    // client -> keepalive-proxy (send v2) -> HAProxy (accept-proxy, then send-proxy v1) -> test server
    const sink = await startServer();
    const haproxyPort = await freePort();
    await startHaproxy(
      `frontend fe\n  bind 127.0.0.1:${haproxyPort} accept-proxy\n  default_backend be\nbackend be\n  server s1 127.0.0.1:${sink.port} send-proxy`,
      haproxyPort,
    );
    const { port } = await startTestProxy({}, config({ upstream: { address: `127.0.0.1:${haproxyPort}`, proxyProtocol: "v2" } }));
    const client = await connectClient(port);
    client.write("through two proxies");
    const received = await acceptedWithData(sink);
    await waitUntil(() => received.bytes().includes("through two proxies") || undefined, 3000, "the payload");
    const line = received.bytes().toString().split("\r\n")[0];
    expect(line).toBe(`PROXY TCP4 127.0.0.1 127.0.0.1 ${client.localPort} ${port}`);
  });
});

describe("PROXY protocol from a load balancer", () => {
  it("takes the client's address from HAProxy's send-proxy-v2 header and forwards only the payload", async () => {
    const upstream = await startServer();
    const { port, closed } = await startTestProxy(
      {},
      config({ upstream: { address: `127.0.0.1:${upstream.port}` }, client: { proxyProtocol: { accept: "v2", trustedSources: ["127.0.0.1/32"] } } }),
    );
    const haproxyPort = await freePort();
    await startHaproxy(`frontend fe\n  bind 127.0.0.1:${haproxyPort}\n  default_backend be\nbackend be\n  server s1 127.0.0.1:${port} send-proxy-v2`, haproxyPort);
    const client = await connectClient(haproxyPort);
    const clientPort = client.localPort;
    client.write("payload only");
    const received = await acceptedWithData(upstream);
    await waitUntil(() => received.bytes().length >= 12 || undefined, 3000, "the payload");
    expect(received.bytes().toString()).toBe("payload only");
    client.end();
    received.socket.end();
    const summary = await waitUntil(() => closed.find((s) => s.bytesFromUpstream === 0 && s.bytesFromClient > 12), 3000, "the session to close");
    expect(summary.client).toBe(`127.0.0.1:${clientPort}`);
  });

  it("accepts a v1 header and keeps bytes that arrive in the same packet", async () => {
    const upstream = await startServer();
    const { port, nextClosed } = await startTestProxy(
      {},
      config({ upstream: { address: `127.0.0.1:${upstream.port}` }, client: { proxyProtocol: { accept: "any", trustedSources: ["127.0.0.0/8"] } } }),
    );
    const client = await connectClient(port);
    client.write("PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\nfirst bytes");
    const server = await upstream.accepted();
    const received = collect(server);
    await waitUntil(() => received.bytes().length >= 11 || undefined, 3000, "the payload");
    expect(received.bytes().toString()).toBe("first bytes");
    client.resetAndDestroy();
    expect((await nextClosed()).client).toBe("203.0.113.7:5555");
  });

  it("resets a client from an untrusted source", async () => {
    const upstream = await startServer();
    const { port, nextClosed } = await startTestProxy(
      {},
      config({ upstream: { address: `127.0.0.1:${upstream.port}` }, client: { proxyProtocol: { accept: "v1", trustedSources: ["127.0.0.2/32"] } } }),
    );
    const seen = observe(connect({ host: "127.0.0.1", port, localAddress: "127.0.0.1" }));
    seen.socket.write("PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n");
    await waitUntil(() => seen.closed, 2000, "the reset");
    expect(seen.errorCode).toBe("ECONNRESET");
    expect((await nextClosed()).reason).toBe("client_proxy_untrusted");
  });

  it.each([
    ["a malformed v1 header", "PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n", "client_proxy_header_invalid"],
    ["no header at all", "SELECT 1;\r\n", "client_proxy_header_invalid"],
    ["a v2 header with a wrong version", Buffer.concat([encodeProxyHeader("v2", { address: "1.2.3.4", port: 1 }, { address: "5.6.7.8", port: 2 }).subarray(0, 12), Buffer.from([0x31, 0x11, 0, 12])]), "client_proxy_header_invalid"],
    ["silence until the header timeout", "", "client_proxy_header_timeout"],
  ])("resets a client that sends %s", async (_what, bytes, reason) => {
    const upstream = await startServer();
    let upstreamConnections = 0;
    upstream.server.on("connection", () => upstreamConnections++);
    const { port, nextClosed } = await startTestProxy(
      {},
      config({
        upstream: { address: `127.0.0.1:${upstream.port}` },
        client: { proxyProtocol: { accept: "any", trustedSources: ["127.0.0.1/32"], headerTimeout: "300ms" } },
      }),
    );
    const seen = observe(connect(port, "127.0.0.1"));
    if (bytes.length > 0) seen.socket.write(bytes);
    await waitUntil(() => seen.closed, 2000, "the reset");
    expect(seen.errorCode).toBe("ECONNRESET");
    expect((await nextClosed()).reason).toBe(reason);
    expect(upstreamConnections).toBe(0);
  });
});
