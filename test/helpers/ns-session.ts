// One session through the proxy CLI between network namespaces (a ThreeHop or
// a NatChain): a peer process at each end, the proxy in the middle, built
// step by step so a test can act between the steps (drop SYNs, start a
// Prometheus) before the session opens.

import type { Teardown, ThreeHop } from "./netns.js";
import { type PeerConnection, PeerProcess } from "./peer-process.js";
import { ProxyProcess } from "./proxy-process.js";

/** A peer in the client namespace, and one in the upstream namespace listening on `upstreamPort`. */
export interface Peers {
  readonly clientPeer: PeerProcess;
  readonly upstreamPeer: PeerProcess;
  readonly upstreamPort: number;
}

/** Starts both peers, the upstream one listening on the upstream's address (any port). */
export async function startPeers(lab: Teardown, topo: ThreeHop): Promise<Peers> {
  const [clientPeer, upstreamPeer] = await Promise.all([PeerProcess.start(topo.client, lab), PeerProcess.start(topo.upstream, lab)]);
  const upstreamPort = await upstreamPeer.listen(topo.upstreamIp);
  return { clientPeer, upstreamPeer, upstreamPort };
}

/** Starts the proxy CLI in the proxy namespace, listening on the client link (port 0) and forwarding to the upstream peer, with `extra` flags. */
export function startProxy(lab: Teardown, topo: ThreeHop, upstreamPort: number, extra: readonly string[]): Promise<ProxyProcess> {
  return ProxyProcess.start(topo.proxy, lab, ["--listen", `${topo.proxyClientIp}:0`, "--upstream", `${topo.upstreamIp}:${upstreamPort}`, ...extra]);
}

/** The two ends of a session. */
export interface Ends {
  readonly client: PeerConnection;
  readonly upstream: PeerConnection;
}

/** Opens the upstream peer's first session, from the client peer through `proxy`, and has it carry 4 bytes each way. */
export async function pingPong(topo: ThreeHop, peers: Peers, proxy: ProxyProcess): Promise<Ends> {
  const client = peers.clientPeer.connect(topo.proxyClientIp, proxy.port);
  await client.waitFor("connected", 5_000);
  const upstream = await peers.upstreamPeer.accepted(1, 5_000);
  client.send("ping");
  await upstream.waitForBytes(4, 5_000);
  upstream.send("pong");
  await client.waitForBytes(4, 5_000);
  return { client, upstream };
}
