import { isIP, type Socket } from "node:net";
import { connect, type TLSSocket } from "node:tls";
import type { CancelSignal } from "../util/cancel-signal.js";
import { settleOnce } from "../util/settle-once.js";
import type { UpstreamTlsSettings } from "./material.js";

/** How the upstream's handshake ended. `cancelled`: the session ended first. */
export type UpstreamHandshakeOutcome =
  | { readonly ok: true; readonly socket: TLSSocket; readonly protocol: string; readonly cipher: string; readonly durationMs: number }
  | { readonly ok: false; readonly cause: "failed" | "timeout" | "cancelled"; readonly code: string | undefined; readonly durationMs: number };

/**
 * Runs a TLS client handshake over a connected upstream TCP socket, which
 * already carries the upstream leg's socket options (set where it was made).
 * `host` is the upstream's configured host name: the default SNI and the name
 * verified. Bounded by `timeoutMs` and by `signal`; never rejects. A failed or
 * cancelled handshake destroys the socket.
 */
export function originateTls(
  raw: Socket,
  host: string | undefined,
  settings: UpstreamTlsSettings,
  timeoutMs: number,
  signal: CancelSignal,
): Promise<UpstreamHandshakeOutcome> {
  const started = performance.now();
  const name = settings.serverName ?? host;
  return new Promise((resolve) => {
    const socket = connect({
      socket: raw,
      secureContext: settings.context,
      rejectUnauthorized: settings.verify,
      // SNI carries a DNS name only; an IP address is still verified against the certificate's IP SANs.
      ...(name !== undefined && isIP(name) === 0 ? { servername: name } : {}),
      ...(name !== undefined ? { host: name } : {}),
    });
    const ms = (): number => performance.now() - started;
    const finish = settleOnce<UpstreamHandshakeOutcome>(
      {
        timeoutMs,
        signal,
        onTimeout: () => ({ ok: false, cause: "timeout", code: "ETIMEDOUT", durationMs: ms() }),
        onAbort: () => ({ ok: false, cause: "cancelled", code: undefined, durationMs: ms() }),
      },
      (outcome) => {
        socket.off("secureConnect", onSecure);
        if (!outcome.ok) socket.destroy();
        resolve(outcome);
      },
    );
    const onSecure = (): void =>
      finish({ ok: true, socket, protocol: socket.getProtocol() ?? "unknown", cipher: socket.getCipher()?.name ?? "unknown", durationMs: ms() });
    // Stays after the handshake like the connector's: a late error before the session attaches its own lands here.
    socket.on("error", (error: NodeJS.ErrnoException) => finish({ ok: false, cause: "failed", code: error.code, durationMs: ms() }));
    socket.once("secureConnect", onSecure);
    // The upstream closed during the handshake without an error (e.g. it rejected our certificate with a bare FIN).
    socket.once("close", () => finish({ ok: false, cause: "failed", code: "ECONNRESET", durationMs: ms() }));
  });
}
