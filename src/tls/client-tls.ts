import type { Socket } from "node:net";
import { TLSSocket } from "node:tls";
import { type ClientTlsSettings, contextForName } from "./material.js";
import type { CancelSignal } from "../util/cancel-signal.js";
import { settleOnce } from "../util/settle-once.js";

/** How a client's handshake ended. `cancelled`: the session ended first (its own reason stands). */
export type ClientHandshakeOutcome =
  | { readonly ok: true; readonly protocol: string; readonly cipher: string; readonly durationMs: number; readonly peerSubject: string | undefined }
  | { readonly ok: false; readonly cause: "failed" | "timeout" | "cancelled"; readonly code: string | undefined; readonly durationMs: number };

/** A missing client certificate, named the way OpenSSL names it when it refuses one itself. */
const NO_CLIENT_CERT = "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE";

/** A client that sent its FIN in the middle of the handshake, named as OpenSSL names it. */
const EOF_IN_HANDSHAKE = "ERR_SSL_UNEXPECTED_EOF_WHILE_READING";

function ignore(): void {}

interface VerifyingHandle {
  verifyError?: () => (Error & { code?: string }) | null | undefined;
}

/**
 * Why the client's certificate is refused, or undefined when it chains to
 * clientCa. A TLS socket made without a tls.Server never sets `authorized`,
 * so the verdict OpenSSL reached during the handshake is read the way Node's
 * own tls.Server reads it (the handle's verifyError). Should a Node version
 * lack it, every client is refused: failing closed.
 */
function clientCertProblem(socket: TLSSocket): string | undefined {
  if (socket.getPeerX509Certificate() === undefined) return NO_CLIENT_CERT;
  const handle = (socket as unknown as { _handle?: VerifyingHandle | null })._handle;
  if (typeof handle?.verifyError !== "function") return "ERR_TLS_CLIENT_CERT_UNVERIFIABLE";
  const error = handle.verifyError();
  return error ? (error.code ?? "ERR_TLS_CLIENT_CERT_REFUSED") : undefined;
}

/**
 * Puts a TLS server on an accepted TCP socket. The TCP socket keeps the
 * client leg's keepalive and TCP_USER_TIMEOUT (inherited from the listening
 * socket), and the TLS socket shares its fd, so they read back as on a
 * plaintext leg. Client certificates are requested but judged here, on
 * 'secure' (rejectUnauthorized false): Node would otherwise end a missing or
 * untrusted certificate with a silent close, which no close reason could name.
 */
export function wrapClient(raw: Socket, settings: ClientTlsSettings): TLSSocket {
  const socket = new TLSSocket(raw, {
    isServer: true,
    secureContext: settings.context,
    requestCert: settings.requireClientCert,
    rejectUnauthorized: false,
    ...(settings.byName.size > 0
      ? {
          SNICallback: (name: string, cb: (err: Error | null, ctx?: import("node:tls").SecureContext) => void) =>
            cb(null, contextForName(settings, name) ?? settings.context),
        }
      : {}),
  });
  // Errors surface on the TLS socket; the TCP socket under it must never throw one unheard.
  raw.on("error", ignore);
  return socket;
}

/**
 * Watches a client's handshake and calls `done` exactly once, synchronously
 * inside the event that decides it, so a caller that records a close reason
 * there records it before the session's own error handler can name a generic
 * client_error. A handshake error's listener is prepended for the same reason.
 * `timeoutMs` 0 = no timeout.
 */
export function watchClientHandshake(
  socket: TLSSocket,
  settings: ClientTlsSettings,
  signal: CancelSignal,
  done: (outcome: ClientHandshakeOutcome) => void,
): void {
  const started = performance.now();
  const ms = (): number => performance.now() - started;
  const finish = settleOnce<ClientHandshakeOutcome>(
    {
      timeoutMs: settings.handshakeTimeoutMs,
      signal,
      onTimeout: () => ({ ok: false, cause: "timeout", code: "ETIMEDOUT", durationMs: ms() }),
      onAbort: () => ({ ok: false, cause: "cancelled", code: undefined, durationMs: ms() }),
    },
    (outcome) => {
      socket.off("error", onError);
      socket.off("secure", onSecure);
      socket.off("readable", onEndBeforeHandshake);
      done(outcome);
    },
  );
  const onError = (error: NodeJS.ErrnoException): void => finish({ ok: false, cause: "failed", code: error.code, durationMs: ms() });
  const onSecure = (): void => {
    const refused = settings.requireClientCert ? clientCertProblem(socket) : undefined;
    if (refused !== undefined) {
      finish({ ok: false, cause: "failed", code: refused, durationMs: ms() });
      return;
    }
    finish({ ok: true, protocol: socket.getProtocol() ?? "unknown", cipher: socket.getCipher()?.name ?? "unknown", durationMs: ms(), peerSubject: subjectOf(socket) });
  };
  // No cleartext can arrive before the handshake is done (no 0-RTT data), so a
  // 'readable' then is the client's FIN. Nobody reads the TLS socket until the
  // handshake is done, so 'end' would never be emitted and the client would
  // hold its slot until the handshake timeout. The listener is removed at
  // once when the handshake ends, before the session starts reading.
  const onEndBeforeHandshake = (): void => finish({ ok: false, cause: "failed", code: EOF_IN_HANDSHAKE, durationMs: ms() });
  socket.prependListener("error", onError);
  socket.once("secure", onSecure);
  socket.on("readable", onEndBeforeHandshake);
}

/** The client certificate's subject as `CN=…, O=…` (mutual TLS), or undefined when there is none. */
function subjectOf(socket: TLSSocket): string | undefined {
  const subject = socket.getPeerCertificate()?.subject as Record<string, string | string[]> | undefined;
  if (subject === undefined || Object.keys(subject).length === 0) return undefined;
  return Object.entries(subject)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("+") : v}`)
    .join(", ");
}
