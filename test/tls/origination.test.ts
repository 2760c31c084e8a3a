import { readFileSync } from "node:fs";
import { type AddressInfo, createServer, type Socket } from "node:net";
import { TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { loadLibc } from "../../src/net/libc.js";
import { SocketOptions } from "../../src/net/socket-options.js";
import { startTestProxy, type TestProxy, waitUntil } from "../helpers/in-process-proxy.js";
import { connectClient, observe, sendRandom, startServer } from "../helpers/tcp.js";
import { type CertFiles, makeTestPki, type TestPki } from "../helpers/tls-certs.js";
import { freePort, startProgram, startStunnel, waitForOutput } from "../helpers/tls-peers.js";

const MB = 1024 * 1024;

/** A plaintext listener whose upstream leg speaks TLS to 127.0.0.1:upstreamPort. */
function originatingProxy(upstreamPort: number, tls: Record<string, unknown>, flags: Record<string, string> = {}): Promise<TestProxy> {
  return startTestProxy(flags, {
    listeners: [{ name: "origin", listen: "127.0.0.1:0", upstream: { address: `127.0.0.1:${upstreamPort}`, tls: { enabled: true, ...tls } } }],
  });
}

describe(`TLS origination on Node ${process.version}`, () => {
  let pki: TestPki;
  beforeAll(() => {
    pki = makeTestPki({ autoRemove: false });
  });
  afterAll(() => pki?.remove());

  /** stunnel terminating TLS with `cert` in front of a fresh plaintext loopback server. */
  async function stunnelUpstream(cert: CertFiles) {
    const plain = await startServer();
    const port = await startStunnel(pki.dir, { client: false, connectPort: plain.port, cert, name: `up${plain.port}` });
    return { port, accepted: plain.accepted };
  }

  /** A client sends "hi" and its FIN through the proxy; both reach the upstream, whose FIN then goes back. */
  async function helloAndFin(port: number, accepted: () => Promise<Socket>): Promise<void> {
    const client = await connectClient(port);
    const server = await accepted();
    const atServer = observe(server);
    client.end("hi");
    await waitUntil(() => atServer.ended, 5000, "the bytes and FIN at the upstream");
    server.end();
    expect(atServer.bytes).toBe(2);
  }

  it("reaches a TLS upstream (stunnel) verified with the right CA, 4 MB each way intact, and logs the upstream's protocol", async () => {
    const up = await stunnelUpstream(pki.server);
    const { port, nextClosed, logs } = await originatingProxy(up.port, { ca: pki.ca.cert, serverName: "localhost" });
    const client = await connectClient(port);
    const server = await up.accepted();
    const atClient = observe(client);
    const atServer = observe(server);
    const [sentUp, sentDown] = await Promise.all([sendRandom(client, 4 * MB), sendRandom(server, 4 * MB)]);
    await waitUntil(() => atServer.bytes === 4 * MB && atClient.bytes === 4 * MB, 20_000, "4 MB each way");
    expect(atServer.hash.digest("hex")).toBe(sentUp);
    expect(atClient.hash.digest("hex")).toBe(sentDown);
    // Half-close through stunnel: the client's FIN reaches the service, whose FIN comes back.
    client.end();
    await waitUntil(() => atServer.ended, 5000, "the client's FIN at the service");
    server.end();
    await waitUntil(() => atClient.ended, 5000, "the service's FIN at the client");
    const summary = await nextClosed(10_000);
    expect(summary.reason).toBe("client_eof");
    expect(summary.tls).toMatchObject({ upstreamProtocol: "TLSv1.3" });
    expect(logs.find((l) => l.msg === "session closed")).toMatchObject({ upstreamTlsProtocol: "TLSv1.3", upstreamTlsCipher: expect.any(String) });
  });

  it("verifies an upstream named by IP address against the certificate's IP SAN when no serverName is set", async () => {
    const up = await stunnelUpstream(pki.server);
    const { port, nextClosed } = await originatingProxy(up.port, { ca: pki.ca.cert });
    await helloAndFin(port, up.accepted);
    expect((await nextClosed()).reason).toBe("client_eof");
  });

  it("ends the session upstream_tls_handshake_failed with the verification error when the upstream's CA is not trusted", async () => {
    const up = await stunnelUpstream(pki.server);
    const { port, nextClosed } = await originatingProxy(up.port, { ca: pki.otherCa.cert, serverName: "localhost" });
    const client = await connectClient(port);
    const atClient = observe(client);
    const summary = await nextClosed();
    expect(summary).toMatchObject({ reason: "upstream_tls_handshake_failed", side: "upstream", errno: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" });
    await waitUntil(() => atClient.closed, 3000, "the client to be reset");
    expect(atClient.errorCode).toBe("ECONNRESET");
  });

  it("ends the session upstream_tls_handshake_failed when serverName does not match the upstream's certificate", async () => {
    const up = await stunnelUpstream(pki.server);
    const { port, nextClosed, logs } = await originatingProxy(up.port, { ca: pki.ca.cert, serverName: "db.example.com" });
    await connectClient(port);
    const summary = await nextClosed();
    expect(summary).toMatchObject({ reason: "upstream_tls_handshake_failed", errno: "ERR_TLS_CERT_ALTNAME_INVALID" });
    await waitUntil(() => logs.find((l) => l.msg === "session closed"), 2000, "the log line");
    expect(logs.find((l) => l.msg === "session closed")).toMatchObject({ tlsError: "ERR_TLS_CERT_ALTNAME_INVALID" });
  });

  it("names CERT_HAS_EXPIRED when the upstream presents an expired certificate", async () => {
    const up = await stunnelUpstream(pki.expiredServer);
    const { port, nextClosed } = await originatingProxy(up.port, { ca: pki.ca.cert, serverName: "localhost" });
    await connectClient(port);
    expect(await nextClosed()).toMatchObject({ reason: "upstream_tls_handshake_failed", errno: "CERT_HAS_EXPIRED" });
  });

  it("tries the next upstream when a TLS handshake fails, and after failureThreshold failures skips the failing one", async () => {
    const bad = await stunnelUpstream(pki.expiredServer);
    const good = await stunnelUpstream(pki.server);
    const { port, nextClosed, proxy } = await startTestProxy({}, {
      listeners: [
        {
          name: "origin",
          listen: "127.0.0.1:0",
          upstream: {
            addresses: [`127.0.0.1:${bad.port}`, `127.0.0.1:${good.port}`],
            failureThreshold: 2,
            cooldown: "60s",
            retryBackoff: "0s",
            tls: { enabled: true, ca: pki.ca.cert, serverName: "localhost" },
          },
        },
      ],
    });
    const pool = [...proxy.listeners.values()][0]?.upstreams;
    if (!pool) throw new Error("no listener");
    const badAddress = `127.0.0.1:${bad.port}`;
    // The TCP connect to the first address succeeds each time; its handshake does not, and the
    // same session goes on to the second address: the client never sees the bad certificate.
    for (let i = 1; i <= 2; i++) {
      await helloAndFin(port, good.accepted);
      const summary = await nextClosed();
      expect(summary).toMatchObject({ reason: "client_eof", upstream: `127.0.0.1:${good.port}`, tls: { upstreamProtocol: "TLSv1.3" } });
      expect(summary.tls?.error).toBeUndefined(); // the first address's failure no longer describes the session
      // The second failure in a row reaches the threshold: the cool-down starts and the count restarts.
      expect(pool.inCooldown(badAddress)).toBe(i === 2);
      if (i === 1) expect(pool.healthOf(badAddress)?.failures).toBe(1);
    }
    const handshakes = await proxy.metrics?.registry.getSingleMetricAsString("keepalive_proxy_tls_handshakes_total");
    expect(handshakes).toContain('side="upstream",result="failed"} 2\n');
    expect(handshakes).toContain('side="upstream",result="ok"} 2\n');
    // In cool-down it is no longer tried first: the third session goes straight to the good one.
    await helloAndFin(port, good.accepted);
    expect(await nextClosed()).toMatchObject({ reason: "client_eof", upstream: `127.0.0.1:${good.port}` });
    expect(await proxy.metrics?.registry.getSingleMetricAsString("keepalive_proxy_tls_handshakes_total")).toContain('side="upstream",result="failed"} 2\n');
    // A good handshake clears the address's failures as a good connect does.
    expect(pool.healthOf(`127.0.0.1:${good.port}`)).toBeUndefined();
  });

  it("ends the session upstream_tls_handshake_failed with the last error once every attempt failed", async () => {
    const first = await stunnelUpstream(pki.expiredServer);
    const second = await stunnelUpstream(pki.expiredServer);
    const { port, nextClosed } = await startTestProxy({}, {
      listeners: [
        {
          name: "origin",
          listen: "127.0.0.1:0",
          upstream: {
            addresses: [`127.0.0.1:${first.port}`, `127.0.0.1:${second.port}`],
            retryBackoff: "0s",
            tls: { enabled: true, ca: pki.ca.cert, serverName: "localhost" },
          },
        },
      ],
    });
    await connectClient(port);
    expect(await nextClosed()).toMatchObject({
      reason: "upstream_tls_handshake_failed",
      errno: "CERT_HAS_EXPIRED",
      upstream: `127.0.0.1:${second.port}`,
      tls: { error: "CERT_HAS_EXPIRED" },
    });
  });

  it("presents its client certificate to an upstream that requires one (openssl s_server -Verify)", async () => {
    const sPort = await freePort();
    const sServer = startProgram([
      "openssl",
      "s_server",
      "-accept",
      String(sPort),
      "-cert",
      pki.server.cert,
      "-key",
      pki.server.key,
      "-CAfile",
      pki.ca.cert,
      "-Verify",
      "1",
      "-verify_return_error",
      "-rev",
    ]);
    await waitForOutput(sServer.output, /ACCEPT/, 10_000);
    const { port, nextClosed } = await originatingProxy(sPort, { ca: pki.ca.cert, serverName: "localhost", cert: pki.client.cert, key: pki.client.key });
    const client = await connectClient(port);
    let answer = "";
    client.on("data", (d: Buffer) => {
      answer += d.toString();
    });
    client.write("hello\n");
    await waitUntil(() => answer.includes("olleh"), 5000, "s_server's reversed line");
    expect(sServer.output()).toMatch(/Verification: OK/);
    client.destroy();
    await nextClosed();
  });

  it("sends a PROXY header in cleartext before the ClientHello when the upstream leg speaks TLS", async () => {
    // The upstream reads the header line off the TCP socket, then runs TLS on what follows (HAProxy's accept-proxy + ssl order).
    let header = "";
    let secured = "";
    const server = createServer((raw) => {
      raw.once("readable", () => {
        const head = raw.read() as Buffer;
        const end = head.indexOf("\r\n") + 2;
        header = head.subarray(0, end).toString();
        raw.unshift(head.subarray(end));
        const tlsSide = new TLSSocket(raw, { isServer: true, cert: readFileSync(pki.server.cert), key: readFileSync(pki.server.key) });
        tlsSide.on("error", () => undefined);
        tlsSide.on("data", (d: Buffer) => {
          secured += d.toString();
        });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    onTestFinished(() => {
      server.close();
    });
    const { port } = await startTestProxy(
      {},
      {
        listeners: [
          {
            name: "pp",
            listen: "127.0.0.1:0",
            upstream: {
              address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
              proxyProtocol: "v1",
              tls: { enabled: true, ca: pki.ca.cert, serverName: "localhost" },
            },
          },
        ],
      },
    );
    const client = await connectClient(port);
    client.write("inside TLS");
    await waitUntil(() => secured === "inside TLS", 5000, "the bytes inside TLS");
    expect(header).toMatch(new RegExp(`^PROXY TCP4 127\\.0\\.0\\.1 127\\.0\\.0\\.1 ${client.localPort} ${port}\\r\\n$`));
  });

  it("keeps the upstream leg's keepalive and user timeout on the TCP socket under TLS, as read back from the kernel", async () => {
    const up = await stunnelUpstream(pki.server);
    const { proxy, port } = await originatingProxy(
      up.port,
      { ca: pki.ca.cert, serverName: "localhost" },
      {
        "upstream-keepalive-idle": "11s",
        "upstream-keepalive-interval": "2s",
        "upstream-keepalive-count": "5",
        "upstream-user-timeout": "2500ms",
      },
    );
    const client = await connectClient(port);
    const server = await up.accepted();
    const atServer = observe(server);
    client.write("x");
    await waitUntil(() => atServer.bytes > 0, 5000, "a byte through the proxy and stunnel");
    const [session] = [...proxy.sessions()];
    if (!session?.upstreamSocket) throw new Error("no established session");
    expect(session.upstreamSocket.constructor.name).toBe("TLSSocket");
    expect(new SocketOptions(loadLibc()).read(session.upstreamSocket)).toEqual({
      keepalive: true,
      keepaliveIdleSeconds: 11,
      keepaliveIntervalSeconds: 2,
      keepaliveCount: 5,
      userTimeoutMs: 2500,
      noDelay: true,
    });
  });

  it("carries a TLS client's bytes from stunnel (as TLS client in front) through TLS termination to a plaintext service", async () => {
    const plain = await startServer();
    const proxy = await startTestProxy(
      {},
      {
        listeners: [
          {
            name: "term",
            listen: "127.0.0.1:0",
            upstream: { address: `127.0.0.1:${plain.port}` },
            client: { tls: { cert: pki.server.cert, key: pki.server.key } },
          },
        ],
      },
    );
    const stunnelPort = await startStunnel(pki.dir, { client: true, connectPort: proxy.port, ca: pki.ca.cert, name: `front${proxy.port}` });
    const client = await connectClient(stunnelPort);
    const server = await plain.accepted();
    const atServer = observe(server);
    const atClient = observe(client);
    const sent = await sendRandom(client, 1 * MB);
    await waitUntil(() => atServer.bytes === 1 * MB, 10_000, "1 MB through stunnel and the proxy");
    expect(atServer.hash.digest("hex")).toBe(sent);
    server.end("done");
    await waitUntil(() => atClient.bytes === 4, 5000, "the answer back through both TLS hops");
    client.destroy();
    const summary = await proxy.nextClosed();
    expect(summary.tls?.clientProtocol).toMatch(/^TLSv1\.[23]$/);
  });
});
