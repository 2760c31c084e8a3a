import type { Socket } from "node:net";
import type { KernelLegOptions, TcpInfo } from "../net/socket-options.js";

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
  readonly state: "connecting" | "established";
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
/** The largest `limit` accepted: each session costs a dozen getsockopt calls. */
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
  readonly now?: number;
}

/**
 * Lists live sessions in accept order, listener by listener, with each leg's
 * options and TCP_INFO read from the kernel now. Only the first `limit` are
 * read from the kernel; the rest are only counted.
 */
export function listConnections(source: ConnectionsSource, options: ListOptions): ConnectionsReport {
  const now = options.now ?? Date.now();
  const connections: ConnectionView[] = [];
  let total = 0;
  for (const session of source.sessions()) {
    if (options.listener !== undefined && session.listener !== options.listener) continue;
    total += 1;
    if (connections.length < options.limit) connections.push(describe(session, source.socketOptions, now));
  }
  return { total, returned: connections.length, limit: options.limit, truncated: total > connections.length, connections };
}

function describe(session: SessionView, kernel: KernelReader, now: number): ConnectionView {
  const client = legView(session.client, kernel);
  const upstream = session.upstreamSocket === undefined ? null : legView(session.upstreamSocket, kernel);
  const idleMs = idleOf([client.tcpInfo, upstream?.tcpInfo ?? null]);
  return {
    id: session.id,
    listener: session.listener,
    client: session.clientAddress,
    upstream: session.upstreamSocket === undefined ? null : (session.upstreamPeer ?? null),
    state: session.upstreamSocket === undefined ? "connecting" : "established",
    startedAt: new Date(session.startedAt).toISOString(),
    ageMs: now - session.startedAt,
    idleMs,
    lastActivityAt: idleMs === null ? null : new Date(now - idleMs).toISOString(),
    bytesFromClient: session.client.bytesRead,
    bytesFromUpstream: session.upstreamSocket?.bytesRead ?? 0,
    legs: { client, upstream },
  };
}

function legView(socket: Socket, kernel: KernelReader): LegView {
  return { options: kernel.read(socket) ?? null, tcpInfo: kernel.tcpInfo(socket) ?? null };
}

function idleOf(infos: readonly (TcpInfo | null)[]): number | null {
  let idle: number | null = null;
  for (const info of infos) {
    if (info === null) continue;
    const leg = Math.min(info.lastDataReceivedMs, info.lastDataSentMs);
    idle = idle === null ? leg : Math.min(idle, leg);
  }
  return idle;
}
