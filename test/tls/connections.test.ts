import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAdminProxy } from "../helpers/admin-proxy.js";
import { waitUntil } from "../helpers/in-process-proxy.js";
import { observe, startServer } from "../helpers/tcp.js";
import { makeTestPki, type TestPki } from "../helpers/tls-certs.js";
import { connectTlsClient, startStunnel } from "../helpers/tls-peers.js";

interface ConnectionsBody {
  readonly connections: readonly {
    readonly legs: Record<"client" | "upstream", { readonly options: Record<string, unknown>; readonly tcpInfo: { readonly state: string } }>;
  }[];
}

describe(`/connections under TLS on Node ${process.version}`, () => {
  let pki: TestPki;
  beforeAll(() => {
    pki = makeTestPki({ autoRemove: false });
  });
  afterAll(() => pki?.remove());

  it("reads each leg's keepalive and user timeout back from the TCP sockets under both TLS legs", async () => {
    const plain = await startServer();
    const stunnelPort = await startStunnel(pki.dir, { client: false, connectPort: plain.port, cert: pki.server, name: "conns" });
    const p = await startAdminProxy({
      upstream: `127.0.0.1:${stunnelPort}`,
      "tls-cert": pki.server.cert,
      "tls-key": pki.server.key,
      "upstream-tls": "true",
      "upstream-tls-ca": pki.ca.cert,
      "upstream-tls-server-name": "localhost",
      "client-keepalive-idle": "7s",
      "client-keepalive-count": "4",
      "upstream-keepalive-idle": "11s",
      "upstream-user-timeout": "2500ms",
    });
    const client = await connectTlsClient(p.port, pki.ca.cert);
    const server = await plain.accepted();
    const atServer = observe(server);
    client.write("x");
    await waitUntil(() => atServer.bytes > 0, 5000, "a byte through both TLS legs");

    const res = await p.get("/connections");
    expect(res.status).toBe(200);
    const [session] = (JSON.parse(res.body) as ConnectionsBody).connections;
    expect(session?.legs.client.options).toEqual({
      keepalive: true,
      keepaliveIdleSeconds: 7,
      keepaliveIntervalSeconds: 10,
      keepaliveCount: 4,
      userTimeoutMs: 7000 + 10_000 * 4,
      noDelay: true,
    });
    expect(session?.legs.upstream.options).toEqual({
      keepalive: true,
      keepaliveIdleSeconds: 11,
      keepaliveIntervalSeconds: 10,
      keepaliveCount: 3,
      userTimeoutMs: 2500,
      noDelay: true,
    });
    expect(session?.legs.client.tcpInfo.state).toBe("ESTABLISHED");
    expect(session?.legs.upstream.tcpInfo.state).toBe("ESTABLISHED");
  });
});
