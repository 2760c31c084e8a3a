// Dead peers under TLS, between real network namespaces: the keepalive
// options sit on the TCP socket under each TLS leg, so a host that vanishes
// is found within the same bound as in plaintext, and the other (TLS) leg is
// reset at once.

import { afterAll, beforeAll, describe, test } from "vitest";
import { Lab, netnsSupport, threeHop, vanish } from "../helpers/netns.js";
import { PeerProcess } from "../helpers/peer-process.js";
import { ProxyProcess } from "../helpers/proxy-process.js";
import { makeTestPki, type TestPki } from "../helpers/tls-certs.js";

const support = netnsSupport();
if (!support.ok) console.warn(`skipping the netns TLS tests: ${support.reason}`);

const KEEPALIVE = { idleMs: 2_000, intervalMs: 1_000, count: 3 } as const;
const KEEPALIVE_ARGS = ["--keepalive-idle", "2s", "--keepalive-interval", "1s", "--keepalive-count", "3", "--user-timeout", "5s", "--drain-timeout", "0"];
/** idle + interval × count + 2 s, as the issue bounds it. */
const BOUND_MS = KEEPALIVE.idleMs + KEEPALIVE.intervalMs * KEEPALIVE.count + 2_000;

type OnFinished = (fn: () => Promise<void>) => void;

function openLab(onTestFinished: OnFinished): Lab {
  const lab = new Lab();
  onTestFinished(() => lab.destroy());
  return lab;
}

describe.skipIf(!support.ok).concurrent(`TLS legs between network namespaces on Node ${process.version}`, () => {
  let pki: TestPki;
  beforeAll(() => {
    pki = makeTestPki({ autoRemove: false });
  });
  afterAll(() => pki?.remove());

  /**
   * A proxy terminating TLS in the middle namespace (and, with `upstreamTls`,
   * originating it to a TLS upstream), with one session that has carried a
   * byte each way.
   */
  async function establishedTlsSession(onTestFinished: OnFinished, upstreamTls: boolean) {
    const lab = openLab(onTestFinished);
    const topo = await threeHop(lab);
    const [clientPeer, upstreamPeer] = await Promise.all([PeerProcess.start(topo.client, lab), PeerProcess.start(topo.upstream, lab)]);
    const upstreamPort = upstreamTls ? await upstreamPeer.listen(topo.upstreamIp, 0, pki.server) : await upstreamPeer.listen(topo.upstreamIp);
    const proxy = await ProxyProcess.start(topo.proxy, lab, [
      "--listen",
      `${topo.proxyClientIp}:0`,
      "--upstream",
      `${topo.upstreamIp}:${upstreamPort}`,
      "--tls-cert",
      pki.server.cert,
      "--tls-key",
      pki.server.key,
      ...(upstreamTls ? ["--upstream-tls", "--upstream-tls-ca", pki.ca.cert, "--upstream-tls-server-name", "localhost"] : []),
      ...KEEPALIVE_ARGS,
    ]);
    const client = clientPeer.connect(topo.proxyClientIp, proxy.port, { ca: pki.ca.cert, servername: "localhost" });
    await client.waitFor("connected", 5_000);
    const upstream = await upstreamPeer.accepted(1, 5_000);
    client.send("ping");
    await upstream.waitForBytes(4, 5_000);
    upstream.send("pong");
    await client.waitForBytes(4, 5_000);
    return { topo, proxy, client, upstream };
  }

  test("resets the TLS client leg within idle + interval × count + 2 s when the upstream host vanishes from an idle session", {
    timeout: 40_000,
  }, async ({ expect, onTestFinished }) => {
    const { topo, proxy, client } = await establishedTlsSession(onTestFinished, false);

    await vanish(topo.upstream);
    const vanishedAt = Date.now();
    const failure = await client.waitForFailure(BOUND_MS + 10_000);
    const closed = await proxy.waitForSessionClosed(5_000);
    console.log(
      `[netns tls] upstream vanished under a TLS client leg: client ${failure.code ?? failure.ev} after ${failure.t - vanishedAt} ms (bound ${BOUND_MS} ms)`,
    );
    expect(failure).toMatchObject({ ev: "error", code: "ECONNRESET" });
    expect(failure.t - vanishedAt).toBeLessThanOrEqual(BOUND_MS);
    expect(closed).toMatchObject({ reason: "upstream_timeout", side: "upstream", errno: "ETIMEDOUT", tlsProtocol: "TLSv1.3" });
  });

  test("resets the TLS upstream leg within idle + interval × count + 2 s when the TLS client's host vanishes", {
    timeout: 40_000,
  }, async ({ expect, onTestFinished }) => {
    const { topo, proxy, upstream } = await establishedTlsSession(onTestFinished, true);

    await vanish(topo.client);
    const vanishedAt = Date.now();
    const failure = await upstream.waitForFailure(BOUND_MS + 10_000);
    const closed = await proxy.waitForSessionClosed(5_000);
    console.log(`[netns tls] client vanished, both legs TLS: upstream ${failure.code ?? failure.ev} after ${failure.t - vanishedAt} ms (bound ${BOUND_MS} ms)`);
    expect(failure).toMatchObject({ ev: "error", code: "ECONNRESET" });
    expect(failure.t - vanishedAt).toBeLessThanOrEqual(BOUND_MS);
    expect(closed).toMatchObject({ reason: "client_timeout", side: "client", errno: "ETIMEDOUT", upstreamTlsProtocol: "TLSv1.3" });
  });
});
