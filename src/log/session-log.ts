import type { Logger } from "pino";
import type { OpenedSession, ProxyHooks, SessionSummary } from "../proxy/hooks.js";

/**
 * The per-session log lines: exactly one `session closed` line per session,
 * and a `session opened` line when log.sessionOpened is on (asked on every
 * session, so a reload that turns it on or off applies at once).
 */
export function sessionLogHooks(logger: Logger, logOpened: () => boolean): ProxyHooks {
  return {
    sessionOpened: (s) => {
      if (logOpened()) logSessionOpened(logger, s);
    },
    sessionClosed: (s) => logSessionClosed(logger, s),
  };
}

function logSessionOpened(logger: Logger, s: OpenedSession): void {
  logger.info(
    { sessionId: s.id, listener: s.listener, client: s.clientAddress, upstream: s.upstreamPeer, connectMs: Date.now() - s.startedAt },
    "session opened",
  );
}

function logSessionClosed(logger: Logger, s: SessionSummary): void {
  logger.info(
    {
      sessionId: s.sessionId,
      listener: s.listener,
      client: s.client,
      upstream: s.upstream,
      reason: s.reason,
      side: s.side,
      errno: s.errno,
      bytesFromClient: s.bytesFromClient,
      bytesFromUpstream: s.bytesFromUpstream,
      durationMs: s.durationMs,
      ...(s.tls === undefined
        ? {}
        : {
            tlsProtocol: s.tls.clientProtocol,
            tlsCipher: s.tls.clientCipher,
            upstreamTlsProtocol: s.tls.upstreamProtocol,
            upstreamTlsCipher: s.tls.upstreamCipher,
            tlsError: s.tls.error,
          }),
    },
    "session closed",
  );
}
