import type { CloseReason, Side } from "./session/close-reason.js";

/** Everything the proxy reports about one finished session. */
export interface SessionSummary {
  readonly sessionId: string;
  readonly listener: string;
  readonly client: string;
  readonly upstream: string | undefined;
  readonly reason: CloseReason;
  readonly side: Side;
  /** True when both directions ended with a FIN. */
  readonly clean: boolean;
  readonly errno: string | undefined;
  readonly bytesFromClient: number;
  readonly bytesFromUpstream: number;
  readonly durationMs: number;
  /** The negotiated TLS of each TLS leg, when the listener has one. */
  readonly tls?: SessionTls | undefined;
}

/** What a session's TLS legs negotiated, or why their handshake failed (the log line's fields). */
export interface SessionTls {
  /** e.g. `TLSv1.3`, once the client leg's handshake succeeded. */
  clientProtocol?: string;
  clientCipher?: string;
  /** The client certificate's subject, under mutual TLS. */
  clientPeerSubject?: string;
  upstreamProtocol?: string;
  upstreamCipher?: string;
  /** The TLS error code of a failed handshake, e.g. `CERT_HAS_EXPIRED`, `ERR_SSL_NO_SHARED_CIPHER`. */
  error?: string;
}

/** Outcome of one TLS handshake, from a closed set (a metrics label). */
export type TlsHandshakeResult = "ok" | "failed" | "timeout";

/**
 * Outcome of one upstream connect attempt, from a closed set (a metrics label).
 * `cancelled`: the proxy abandoned the attempt (the client left, shutdown, the
 * session's maximum duration); it is neither a success nor a failure of the
 * upstream and has no effect on its health.
 */
export type ConnectResult = "ok" | "refused" | "unreachable" | "dns_failure" | "timeout" | "error" | "cancelled";

/**
 * Outcome of a config reload, from a closed set (a metrics label). `refused`:
 * the proxy was already draining for shutdown, so nothing was loaded.
 */
export type ReloadResult = "success" | "failure" | "refused";

/** Why the proxy could not take a client, by errno, from a closed set (a metrics label). */
export type AcceptErrno = "EMFILE" | "ENFILE" | "ENOBUFS" | "ENOMEM" | "other";

/** The leg a socket option belongs to (a metrics label). */
export type OptionSide = "client" | "upstream";

/** A session whose upstream has just connected; the proxy's Session fits it. */
export interface OpenedSession {
  readonly id: string;
  readonly listener: string;
  readonly clientAddress: string;
  readonly upstreamPeer: string | undefined;
  readonly startedAt: number;
}

/**
 * The observation points of the proxy: logging, metrics and tests subscribe
 * here instead of reaching into sessions. Every callback is optional and is
 * called synchronously, so it must be cheap and must not throw.
 */
export interface ProxyHooks {
  clientAccepted?(listener: string): void;
  upstreamConnected?(listener: string, result: ConnectResult, durationMs: number, errno: string | undefined): void;
  sessionClosed?(summary: SessionSummary): void;
  /** A session's upstream is connected and forwarding begins (once per session). */
  sessionOpened?(session: OpenedSession): void;
  /** A reload was applied (`success`), failed with the running config left in force (`failure`), or refused during a drain (`refused`). */
  configReloaded?(result: ReloadResult): void;
  /** The proxy could not serve a client for lack of its own resources (descriptors, buffers, memory). */
  acceptFailed?(listener: string, errno: AcceptErrno): void;
  /** The kernel refused a socket option on a live socket. */
  socketOptionFailed?(listener: string, side: OptionSide, option: string): void;
  /** A TLS handshake on a leg ended (not called for one the session abandoned). */
  tlsHandshake?(listener: string, side: OptionSide, result: TlsHandshakeResult, durationMs: number): void;
  /** A listener now serves TLS on a leg whose certificate expires at `expiresAt` (seconds since the epoch). */
  tlsCertificate?(listener: string, side: OptionSide, expiresAt: number): void;
}

/** Calls every hook set in order; used to stack logging, metrics and test observers. */
export function combineHooks(...all: ProxyHooks[]): ProxyHooks {
  return {
    clientAccepted: (listener) => {
      for (const h of all) h.clientAccepted?.(listener);
    },
    upstreamConnected: (listener, result, durationMs, errno) => {
      for (const h of all) h.upstreamConnected?.(listener, result, durationMs, errno);
    },
    sessionClosed: (summary) => {
      for (const h of all) h.sessionClosed?.(summary);
    },
    sessionOpened: (session) => {
      for (const h of all) h.sessionOpened?.(session);
    },
    configReloaded: (result) => {
      for (const h of all) h.configReloaded?.(result);
    },
    acceptFailed: (listener, errno) => {
      for (const h of all) h.acceptFailed?.(listener, errno);
    },
    socketOptionFailed: (listener, side, option) => {
      for (const h of all) h.socketOptionFailed?.(listener, side, option);
    },
    tlsHandshake: (listener, side, result, durationMs) => {
      for (const h of all) h.tlsHandshake?.(listener, side, result, durationMs);
    },
    tlsCertificate: (listener, side, expiresAt) => {
      for (const h of all) h.tlsCertificate?.(listener, side, expiresAt);
    },
  };
}
