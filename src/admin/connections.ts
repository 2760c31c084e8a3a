import type { SessionTls } from "../proxy/hooks.js";
import type { Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { type KernelLegOptions, kernelIdleMs, type TcpInfo } from "../net/socket-options.js";

/** A live session as /connections shows it; the proxy's Session fits it as it is. */
export interface SessionView {
  readonly id: string;
  readonly listener: string;
  readonly clientAddress: string;
  readonly upstreamPeer: string | undefined;
  /** Date.now() at accept. */
  readonly startedAt: number;
  readonly client: Socket;
  readonly upstreamSocket: Socket | undefined;
  /** What its TLS legs negotiated, when it has any. */
  readonly tls?: SessionTls | undefined;
}

/** Reads a socket's options and TCP_INFO from the kernel: SocketOptions fits it. */
export interface KernelReader {
  read(socket: Socket): KernelLegOptions | undefined;
  tcpInfo(socket: Socket): TcpInfo | undefined;
}

/** Where the sessions come from; KeepaliveProxy fits it as it is. */
export interface ConnectionsSource {
  sessions(): Iterable<SessionView>;
  readonly socketOptions: KernelReader;
}

/** One leg as the kernel reports it at the moment of the request; null fields once the socket has no fd. */
export interface LegView {
  /** SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT, TCP_NODELAY via getsockopt. */
  readonly options: KernelLegOptions | null;
  /** State, rtt, unacknowledged segments, retransmits, keepalive probes sent, ms since last data. */
  readonly tcpInfo: TcpInfo | null;
}

/** One live session. */
export interface ConnectionView {
  readonly id: string;
  readonly listener: string;
  readonly client: string;
  /** `ip:port` of the upstream; null while the connect is pending. */
  readonly upstream: string | null;
  /** `closed`: the session ended while the listing was being read; its legs are null. */
  readonly state: "connecting" | "established" | "closed";
  readonly startedAt: string;
  readonly ageMs: number;
  /**
   * ms since the last byte either way on either leg, from TCP_INFO
   * (last_data_recv, last_data_sent); null when the kernel reports nothing.
   */
  readonly idleMs: number | null;
  readonly lastActivityAt: string | null;
  readonly bytesFromClient: number;
  readonly bytesFromUpstream: number;
  readonly legs: { readonly client: LegView; readonly upstream: LegView | null };
  /** Present only on a session with TLS: the protocol negotiated and, under mutual TLS, the client certificate's subject. */
  readonly tls?: { readonly protocol: string | undefined; readonly peerSubject: string | undefined };
}

/** The /connections body. */
export interface ConnectionsReport {
  /** Live sessions matching the filter, all of them, even beyond the limit. */
  readonly total: number;
  readonly returned: number;
  readonly limit: number;
  readonly truncated: boolean;
  readonly connections: ConnectionView[];
}

/** Sessions listed when the request has no `limit`: enough to look at, bounded in cost. */
export const DEFAULT_CONNECTIONS_LIMIT = 100;
/**
 * The largest `limit` accepted: what one request may read from the kernel.
 * Each session costs a dozen getsockopt calls (tens of µs through FFI), so
 * 10,000 is about half a second of work, spread over slices.
 */
export const MAX_CONNECTIONS_LIMIT = 10_000;

/** Parses the `limit` query parameter: the limit, or a message for a 400 answer. */
export function parseLimit(text: string | null): number | string {
  if (text === null) return DEFAULT_CONNECTIONS_LIMIT;
  if (!/^\d+$/.test(text) || Number(text) > MAX_CONNECTIONS_LIMIT) {
    return `limit must be a whole number from 0 to ${MAX_CONNECTIONS_LIMIT}; got "${text}"`;
  }
  return Number(text);
}

export interface ListOptions {
  readonly limit: number;
  /** Only this listener's sessions. */
  readonly listener?: string | undefined;
}

/** How one listing ran, for its debug log line. */
export interface ListingSummary {
  readonly total: number;
  readonly returned: number;
  readonly slices: number;
  /** The longest slice, ms: the longest this listing held the event loop at once. */
  readonly longestSliceMs: number;
}

/** Runs one bounded slice of work per turn of the event loop: SliceScheduler fits it. */
export interface SliceRunner {
  run<T>(slice: (deadline: number) => T): Promise<T>;
}

/** Sessions walked between two looks at the clock while counting: a look costs more than a step. */
const COUNT_STEP = 64;

/**
 * Lists live sessions in accept order, listener by listener, as the JSON text
 * of a ConnectionsReport, yielded in pieces: the head (counts), then one piece
 * per slice of sessions read from the kernel, then the tail. Every piece is
 * made inside a slice of `slices`, so the event loop is never held for much
 * more than one slice budget, and the caller can wait for its reader between
 * pieces. Only the first `limit` sessions are read from the kernel; the rest
 * are only counted. A session that closes while the listing runs is shown with
 * `state: "closed"` and null legs, as its sockets have no fd any more.
 */
export async function* listConnections(source: ConnectionsSource, options: ListOptions, slices: SliceRunner): AsyncGenerator<string, ListingSummary> {
  let longestSliceMs = 0;
  let sliceCount = 0;
  const timed = <T>(work: (deadline: number) => T): Promise<T> =>
    slices.run((deadline) => {
      const started = performance.now();
      try {
        return work(deadline);
      } finally {
        sliceCount += 1;
        longestSliceMs = Math.max(longestSliceMs, performance.now() - started);
      }
    });

  const { total, listed } = await snapshot(source, options, timed);
  const truncated = total > listed.length;
  yield `{"total":${total},"returned":${listed.length},"limit":${options.limit},"truncated":${truncated},"connections":[`;
  let next = 0;
  while (next < listed.length) {
    yield await timed((deadline) => {
      const pieces: string[] = [];
      const now = Date.now();
      do {
        const session = listed[next] as SessionView;
        pieces.push((next === 0 ? "" : ",") + JSON.stringify(describe(session, source.socketOptions, now)));
        next += 1;
      } while (next < listed.length && performance.now() < deadline);
      return pieces.join("");
    });
  }
  yield "]}\n";
  return { total, returned: listed.length, slices: sliceCount, longestSliceMs };
}

/**
 * Counts the matching sessions and keeps the first `limit`, walking the live
 * sets in slices. A session seen twice (a reload or shutdown moved its
 * listener to the retired set between two slices) is counted once; one that
 * closes before the walk reaches it is not counted at all, as the sets drop it.
 */
async function snapshot(
  source: ConnectionsSource,
  options: ListOptions,
  timed: <T>(work: (deadline: number) => T) => Promise<T>,
): Promise<{ total: number; listed: SessionView[] }> {
  const walk = source.sessions()[Symbol.iterator]();
  const seen = new Set<SessionView>();
  const listed: SessionView[] = [];
  let done = false;
  while (!done) {
    done = await timed((deadline) => {
      for (;;) {
        for (let step = 0; step < COUNT_STEP; step++) {
          const item = walk.next();
          if (item.done === true) return true;
          const session = item.value;
          if (options.listener !== undefined && session.listener !== options.listener) continue;
          if (seen.has(session)) continue;
          seen.add(session);
          if (listed.length < options.limit) listed.push(session);
        }
        if (performance.now() >= deadline) return false;
      }
    });
  }
  return { total: seen.size, listed };
}

function describe(session: SessionView, kernel: KernelReader, now: number): ConnectionView {
  const client = legView(session.client, kernel);
  const closed = session.client.destroyed && (session.upstreamSocket?.destroyed ?? true);
  const upstream = session.upstreamSocket === undefined ? null : legView(session.upstreamSocket, kernel);
  const idleMs = kernelIdleMs([client.tcpInfo, upstream?.tcpInfo]);
  return {
    id: session.id,
    listener: session.listener,
    client: session.clientAddress,
    upstream: session.upstreamSocket === undefined ? null : (session.upstreamPeer ?? null),
    state: closed ? "closed" : session.upstreamSocket === undefined ? "connecting" : "established",
    startedAt: new Date(session.startedAt).toISOString(),
    ageMs: now - session.startedAt,
    idleMs,
    lastActivityAt: idleMs === null ? null : new Date(now - idleMs).toISOString(),
    bytesFromClient: session.client.bytesRead,
    bytesFromUpstream: session.upstreamSocket?.bytesRead ?? 0,
    legs: { client, upstream },
    ...(session.tls === undefined ? {} : { tls: { protocol: session.tls.clientProtocol ?? session.tls.upstreamProtocol, peerSubject: session.tls.clientPeerSubject } }),
  };
}

function legView(socket: Socket, kernel: KernelReader): LegView {
  return { options: kernel.read(socket) ?? null, tcpInfo: kernel.tcpInfo(socket) ?? null };
}
