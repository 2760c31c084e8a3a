import { createServer as createHttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadLibc } from "../../src/net/libc.js";
import { SocketOptions } from "../../src/net/socket-options.js";
import { startTestProxy, type TestProxy, waitUntil } from "../helpers/in-process-proxy.js";
import { connectClient, observe, sendRandom, startServer } from "../helpers/tcp.js";
import { makeTestPki, type TestPki } from "../helpers/tls-certs.js";
import { connectTlsClient } from "../helpers/tls-peers.js";
import { runTool } from "../helpers/tools.js";

const MB = 1024 * 1024;

/** A proxy terminating TLS with the test PKI's server certificate, in front of a plaintext upstream on `upstreamPort`. */
function tlsProxy(pki: TestPki, upstreamPort: number, tls: Record<string, unknown> = {}, flags: Record<string, string> = {}): Promise<TestProxy> {
  return startTestProxy(flags, {
    listeners: [
      {
        name: "tls",
        listen: "127.0.0.1:0",
        upstream: { address: `127.0.0.1:${upstreamPort}` },
        client: { tls: { cert: pki.server.cert, key: pki.server.key, ...tls } },
      },
    ],
  });
}

/** A TLS client through tlsProxy to a plaintext upstream, with both ends observed. */
async function tlsSession(pki: TestPki) {
  const upstream = await startServer();
  const { port, nextClosed } = await tlsProxy(pki, upstream.port);
  const client = await connectTlsClient(port, pki.ca.cert);
  const server = await upstream.accepted();
  return { client, server, atClient: observe(client), atServer: observe(server), nextClosed };
}

/** openssl s_client sending `input` and then waiting briefly for the answer. */
function sClient(port: number, pki: TestPki, args: readonly string[], input: string) {
  return runTool(
    ["timeout", "10", "openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-servername", "localhost", "-CAfile", pki.ca.cert, "-quiet", ...args],
    { input },
  );
}

describe(`TLS termination on Node ${process.version}`, () => {
  // One PKI for the file: making keys with openssl costs about a second.
  let pki: TestPki;
  beforeAll(() => {
    pki = makeTestPki({ autoRemove: false });
  });
  afterAll(() => pki?.remove());

  it("answers curl over TLS from a plaintext HTTP service and logs the negotiated protocol and cipher", async () => {
    const http = createHttpServer((_req, res) => res.end("plaintext service says hello"));
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    const { proxy, port, logs, nextClosed } = await tlsProxy(pki, (http.address() as AddressInfo).port);
    try {
      const curl = await runTool([
        "curl",
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        pki.ca.cert,
        "--resolve",
        `localhost:${port}:127.0.0.1`,
        `https://localhost:${port}/`,
      ]);
      expect(curl.stderr).toBe("");
      expect(curl.stdout).toBe("plaintext service says hello");
      const summary = await nextClosed();
      expect(summary.tls).toMatchObject({ clientProtocol: "TLSv1.3", clientCipher: expect.stringMatching(/^TLS_/) });
      const line = await waitUntil(() => logs.find((l) => l.msg === "session closed"), 2000, "the session closed line");
      expect(line).toMatchObject({ tlsProtocol: "TLSv1.3", tlsCipher: expect.any(String) });
      expect(proxy.sessionTotal).toBe(0);
    } finally {
      http.close();
    }
  });

  it("carries 10 MB each way sha256-intact and passes close_notify and FIN on as clean ends", async () => {
    const { client, server, atClient, atServer, nextClosed } = await tlsSession(pki);

    const [up, down] = await Promise.all([sendRandom(client, 10 * MB), sendRandom(server, 10 * MB)]);
    client.end();
    server.end();
    await waitUntil(() => atServer.ended && atClient.ended && atServer.closed && atClient.closed, 30_000, "both ends closed");

    expect(atServer.hash.digest("hex")).toBe(up);
    expect(atClient.hash.digest("hex")).toBe(down);
    expect(atClient.errorCode).toBeUndefined();
    expect(atServer.errorCode).toBeUndefined();
    const summary = await nextClosed();
    expect(summary.clean).toBe(true);
    expect(summary.bytesFromClient).toBe(10 * MB);
    expect(summary.bytesFromUpstream).toBe(10 * MB);
  });

  it("passes the TLS client's close_notify and FIN on as a FIN while the upstream keeps sending", async () => {
    const { client, server, atClient, atServer, nextClosed } = await tlsSession(pki);

    client.end("last words");
    await waitUntil(() => atServer.ended, 5000, "the FIN at the upstream");
    expect(atServer.bytes).toBe("last words".length);
    const down = await sendRandom(server, 2 * MB);
    server.end();
    await waitUntil(() => atClient.ended && atClient.closed, 10_000, "the client to get everything and the end");
    expect(atClient.hash.digest("hex")).toBe(down);
    expect(atClient.errorCode).toBeUndefined();
    expect((await nextClosed()).reason).toBe("client_eof");
  });

  it("passes the upstream's FIN on as close_notify and FIN while the TLS client keeps sending", async () => {
    const { client, server, atClient, atServer, nextClosed } = await tlsSession(pki);

    server.end("bye");
    await waitUntil(() => atClient.ended, 5000, "the end at the client");
    expect(atClient.bytes).toBe(3);
    const up = await sendRandom(client, 2 * MB);
    client.end();
    await waitUntil(() => atServer.ended && atServer.closed, 10_000, "the upstream to get everything and a FIN");
    expect(atServer.hash.digest("hex")).toBe(up);
    expect(atServer.errorCode).toBeUndefined();
    expect((await nextClosed()).reason).toBe("upstream_eof");
  });

  it("refuses clients without a certificate, or with one from another CA, before any upstream connect (mutual TLS)", async () => {
    const upstream = await startServer();
    const { port, nextClosed, attempts } = await tlsProxy(pki, upstream.port, { clientCa: pki.ca.cert });

    await sClient(port, pki, [], "no certificate\n");
    const none = await nextClosed();
    expect(none).toMatchObject({ reason: "client_tls_handshake_failed", side: "client", errno: "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE" });
    expect(none.tls?.error).toBe("ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE");

    await sClient(port, pki, ["-cert", pki.otherClient.cert, "-key", pki.otherClient.key], "other CA\n");
    const other = await nextClosed();
    expect(other).toMatchObject({ reason: "client_tls_handshake_failed", errno: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" });
    expect(attempts).toEqual([]);
    expect(other.upstream).toBeUndefined();

    // A good certificate gets through, to the upstream and back.
    const client = await connectTlsClient(port, pki.ca.cert, pki.client);
    const server = await upstream.accepted();
    server.pipe(server);
    const atClient = observe(client);
    client.end("ping");
    await waitUntil(() => atClient.ended, 5000, "the echo");
    expect(atClient.bytes).toBe(4);
    expect(attempts).toEqual(["ok"]);
  });

  it("names the TLS error when the client offers only a version below minVersion", async () => {
    const upstream = await startServer();
    const { port, nextClosed, attempts } = await tlsProxy(pki, upstream.port, { minVersion: "TLSv1.3" });
    await sClient(port, pki, ["-tls1_2"], "old\n");
    const summary = await nextClosed();
    expect(summary.reason).toBe("client_tls_handshake_failed");
    expect(summary.errno).toMatch(/^ERR_SSL_/);
    expect(attempts).toEqual([]);
  });

  it("names ERR_SSL_NO_SHARED_CIPHER when the client offers only ciphers the ECDSA certificate cannot serve", async () => {
    const upstream = await startServer();
    const { port, nextClosed, attempts } = await tlsProxy(pki, upstream.port);
    await sClient(port, pki, ["-tls1_2", "-cipher", "AES128-SHA"], "rsa only\n");
    expect(await nextClosed()).toMatchObject({ reason: "client_tls_handshake_failed", errno: "ERR_SSL_NO_SHARED_CIPHER" });
    expect(attempts).toEqual([]);
  });

  it("refuses a client speaking plaintext HTTP to the TLS listener without an upstream connect", async () => {
    const upstream = await startServer();
    const { port, nextClosed, attempts } = await tlsProxy(pki, upstream.port);
    const client = await connectClient(port);
    const atClient = observe(client);
    client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    const summary = await nextClosed();
    expect(summary.reason).toBe("client_tls_handshake_failed");
    expect(summary.errno).toMatch(/^ERR_SSL_/);
    // Node answers with a TLS alert and closes (a FIN after the alert, not a reset): the client sees its end.
    await waitUntil(() => atClient.ended || atClient.closed, 3000, "the client to see the end");
    expect(attempts).toEqual([]);
  });

  it("resets a client that opens TCP and never speaks TLS after the handshake timeout, without an upstream connect", async () => {
    const upstream = await startServer();
    const { port, nextClosed, attempts } = await tlsProxy(pki, upstream.port, { handshakeTimeout: "300ms" });
    const client = await connectClient(port);
    const atClient = observe(client);
    const started = Date.now();
    await waitUntil(() => atClient.closed, 5000, "the silent client to be closed");
    expect(atClient.errorCode).toBe("ECONNRESET");
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    const summary = await nextClosed();
    expect(summary.reason).toBe("client_tls_handshake_timeout");
    expect(attempts).toEqual([]);
  });

  it("closes a client that sends its FIN in the middle of the handshake at once, not at the handshake timeout", async () => {
    const upstream = await startServer();
    const { port, nextClosed, attempts, proxy } = await tlsProxy(pki, upstream.port, { handshakeTimeout: "30s" });
    const client = await connectClient(port);
    const atClient = observe(client);
    client.end();
    const summary = await nextClosed(3000);
    expect(summary).toMatchObject({ reason: "client_tls_handshake_failed", errno: "ERR_SSL_UNEXPECTED_EOF_WHILE_READING" });
    expect(summary.durationMs).toBeLessThan(1000);
    await waitUntil(() => atClient.closed, 3000, "the client closed");
    expect(attempts).toEqual([]);
    expect(proxy.sessionTotal).toBe(0);
  });

  it("keeps the client leg's keepalive and user timeout on the TCP socket under TLS, as read back from the kernel", async () => {
    const upstream = await startServer();
    const { proxy, port } = await tlsProxy(
      pki,
      upstream.port,
      {},
      {
        "client-keepalive-idle": "7s",
        "client-keepalive-interval": "3s",
        "client-keepalive-count": "4",
      },
    );
    const client = await connectTlsClient(port, pki.ca.cert);
    const server = await upstream.accepted();
    const atServer = observe(server);
    client.write("x");
    await waitUntil(() => atServer.bytes > 0, 3000, "a byte through the proxy");
    const [session] = [...proxy.sessions()];
    if (!session) throw new Error("no session");
    expect(session.client.constructor.name).toBe("TLSSocket");
    expect(new SocketOptions(loadLibc()).read(session.client)).toEqual({
      keepalive: true,
      keepaliveIdleSeconds: 7,
      keepaliveIntervalSeconds: 3,
      keepaliveCount: 4,
      userTimeoutMs: 7000 + 3000 * 4,
      noDelay: true,
    });
  });
});
