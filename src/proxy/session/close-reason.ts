/**
 * Why a session ended: `<side>_<cause>`, from a closed set. The first cause
 * recorded wins; it is reported once, in the `session closed` log line and in
 * the metrics. See docs/close-reasons.md for what each one means to an operator.
 */
export const CloseReason = {
  /** The client sent FIN first; both directions then finished cleanly. */
  ClientEof: "client_eof",
  /** The upstream sent FIN first; both directions then finished cleanly. */
  UpstreamEof: "upstream_eof",
  /** The client reset the connection (ECONNRESET, EPIPE). */
  ClientReset: "client_reset",
  /** The upstream reset the connection (ECONNRESET, EPIPE). */
  UpstreamReset: "upstream_reset",
  /** The client leg's keepalive probes or TCP_USER_TIMEOUT expired (ETIMEDOUT): the client host is gone. */
  ClientTimeout: "client_timeout",
  /** The upstream leg's keepalive probes or TCP_USER_TIMEOUT expired (ETIMEDOUT): the upstream host is gone. */
  UpstreamTimeout: "upstream_timeout",
  /** The network reported the client unreachable (EHOSTUNREACH, ENETUNREACH) on an established leg. */
  ClientUnreachable: "client_unreachable",
  /** The network reported the upstream unreachable (EHOSTUNREACH, ENETUNREACH) on an established leg. */
  UpstreamUnreachable: "upstream_unreachable",
  /** Any other socket error on the client leg. */
  ClientError: "client_error",
  /** Any other socket error on the upstream leg. */
  UpstreamError: "upstream_error",
  /** The upstream refused, was unreachable, or its name did not resolve. */
  UpstreamConnectFailed: "upstream_connect_failed",
  /** The upstream did not answer within the connect timeout. */
  UpstreamConnectTimeout: "upstream_connect_timeout",
  /** The client's address is not allowed by the listener's access list. */
  ClientDenied: "client_denied",
  /** A client expected to send a PROXY protocol header sent a malformed one, or none. */
  ClientProxyHeaderInvalid: "client_proxy_header_invalid",
  /** A client expected to send a PROXY protocol header sent none within the header timeout. */
  ClientProxyHeaderTimeout: "client_proxy_header_timeout",
  /** A client connected to a PROXY-protocol listener from a source not in its trusted list. */
  ClientProxyUntrusted: "client_proxy_untrusted",
  /** The client's TLS handshake failed (no shared cipher or version, no or an untrusted client certificate); the errno field holds the TLS error code. No upstream was connected. */
  ClientTlsHandshakeFailed: "client_tls_handshake_failed",
  /** The client did not finish its TLS handshake within the listener's client.tls.handshakeTimeout. No upstream was connected. */
  ClientTlsHandshakeTimeout: "client_tls_handshake_timeout",
  /** The TLS handshake with the upstream failed (verification, name, protocol) or did not finish within the connect timeout; the errno field holds the TLS error code. */
  UpstreamTlsHandshakeFailed: "upstream_tls_handshake_failed",
  /** The listener's or the process's connection limit was reached when the client connected. */
  ProxyConnectionLimit: "proxy_connection_limit",
  /** The session reached the listener's maximum session duration. */
  ProxyMaxDuration: "proxy_max_duration",
  /** No byte either way for the listener's idle timeout (off by default). */
  ProxyIdleTimeout: "proxy_idle_timeout",
  /** One side had sent its FIN and no byte moved the other way for the listener's half-close timeout (off by default). */
  ProxyHalfCloseTimeout: "proxy_half_close_timeout",
  /**
   * The proxy itself ran short of descriptors, socket buffers or memory
   * (EMFILE, ENFILE, ENOBUFS, ENOMEM) and could not serve the client: not the
   * upstream's fault, and counted in accept_errors_total.
   */
  ProxyResourcesExhausted: "proxy_resources_exhausted",
  /** The proxy was stopping and the drain timeout ran out. */
  ProxyShutdown: "proxy_shutdown",
} as const;

export type CloseReason = (typeof CloseReason)[keyof typeof CloseReason];

/** Every close reason, for metrics documentation and label pre-creation. */
export const ALL_CLOSE_REASONS: readonly CloseReason[] = Object.values(CloseReason);

export type Side = "client" | "upstream" | "proxy";
export type Leg = "client" | "upstream";

/** The side a reason blames, read from its prefix. */
export function sideOf(reason: CloseReason): Side {
  return reason.slice(0, reason.indexOf("_")) as Side;
}

/** Whether this reason is a clean end (both FINs) rather than an abort. */
export function isCleanClose(reason: CloseReason): boolean {
  return reason === CloseReason.ClientEof || reason === CloseReason.UpstreamEof;
}

/** Maps a socket error on an established leg to its close reason. Pure. */
export function reasonForSocketError(leg: Leg, code: string | undefined): CloseReason {
  const client = leg === "client";
  switch (code) {
    case "ETIMEDOUT":
      return client ? CloseReason.ClientTimeout : CloseReason.UpstreamTimeout;
    case "ECONNRESET":
    case "EPIPE":
    case "ECONNABORTED":
      return client ? CloseReason.ClientReset : CloseReason.UpstreamReset;
    case "EHOSTUNREACH":
    case "ENETUNREACH":
    case "EHOSTDOWN":
    case "ENETDOWN":
      return client ? CloseReason.ClientUnreachable : CloseReason.UpstreamUnreachable;
    default:
      return client ? CloseReason.ClientError : CloseReason.UpstreamError;
  }
}
