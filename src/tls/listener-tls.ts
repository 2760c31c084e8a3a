import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { ProxyHooks } from "../proxy/hooks.js";
import type { ListenerSettings } from "../proxy/listener.js";
import { CloseReason } from "../proxy/session/close-reason.js";
import type { Session } from "../proxy/session/session.js";
import type { ConnectOutcome } from "../proxy/upstream/upstream-connector.js";
import { watchClientHandshake, wrapClient } from "./client-tls.js";
import type { ClientTlsSettings } from "./material.js";
import { originateTls } from "./upstream-tls.js";

/**
 * A listener's TLS, kept out of the listener's accept path: wraps accepted
 * sockets, holds each session's handshake result until the listener asks for
 * it, and secures connected upstreams. Nothing here outlives its session: the
 * handshake map is weak.
 */
export class ClientTlsGate {
  private readonly handshakes = new WeakMap<Session, Promise<boolean>>();

  /** The TLS socket the session uses as its client leg. */
  wrap(raw: Socket, settings: ClientTlsSettings): TLSSocket {
    return wrapClient(raw, settings);
  }

  /**
   * Starts watching the client's handshake the moment the session exists (it
   * may finish while admission waits). A failure or timeout aborts the session
   * with its TLS close reason and code, recorded before any other cause.
   */
  watch(session: Session, listener: string, settings: ClientTlsSettings, hooks: ProxyHooks): void {
    const handshake = new Promise<boolean>((resolve) => {
      watchClientHandshake(session.client as TLSSocket, settings, session.signal, (outcome) => {
        if (outcome.ok) {
          session.tls = {
            ...session.tls,
            clientProtocol: outcome.protocol,
            clientCipher: outcome.cipher,
            ...(outcome.peerSubject === undefined ? {} : { clientPeerSubject: outcome.peerSubject }),
          };
          hooks.tlsHandshake?.(listener, "client", "ok", outcome.durationMs);
          resolve(true);
          return;
        }
        if (outcome.cause !== "cancelled") {
          session.tls = { ...session.tls, ...(outcome.code === undefined ? {} : { error: outcome.code }) };
          hooks.tlsHandshake?.(listener, "client", outcome.cause, outcome.durationMs);
          session.abort(outcome.cause === "timeout" ? CloseReason.ClientTlsHandshakeTimeout : CloseReason.ClientTlsHandshakeFailed, outcome.code);
        }
        resolve(false);
      });
    });
    this.handshakes.set(session, handshake);
  }

  /** Resolves true once the client's handshake succeeded; false when it failed or the session ended. */
  handshaken(session: Session): Promise<boolean> {
    return this.handshakes.get(session) ?? Promise.resolve(false);
  }

  /**
   * Secures a connected upstream, bounded by the connect timeout. Undefined
   * when it failed (the session is aborted with upstream_tls_handshake_failed
   * and the TLS error code) or the session ended meanwhile. `judged` hears
   * whether a handshake the session did not abandon succeeded, for the
   * upstream's health.
   */
  async originate(
    session: Session,
    settings: ListenerSettings,
    outcome: Extract<ConnectOutcome, { ok: true }>,
    hooks: ProxyHooks,
    judged: (ok: boolean) => void,
  ): Promise<TLSSocket | undefined> {
    const tls = settings.upstreamTls;
    if (tls === undefined) return undefined;
    const result = await originateTls(outcome.socket, outcome.host, tls, settings.upstream.connectTimeoutMs, session.signal);
    if (result.ok) {
      judged(true);
      hooks.tlsHandshake?.(settings.name, "upstream", "ok", result.durationMs);
      session.tls = { ...session.tls, upstreamProtocol: result.protocol, upstreamCipher: result.cipher };
      return result.socket;
    }
    if (result.cause === "cancelled" || !session.open) return undefined;
    judged(false);
    hooks.tlsHandshake?.(settings.name, "upstream", result.cause, result.durationMs);
    session.tls = { ...session.tls, ...(result.code === undefined ? {} : { error: result.code }) };
    session.failConnect(CloseReason.UpstreamTlsHandshakeFailed, result.code, outcome.address);
    return undefined;
  }
}
