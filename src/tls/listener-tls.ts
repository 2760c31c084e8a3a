import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { ProxyHooks, SessionTls } from "../proxy/hooks.js";
import type { ListenerSettings } from "../proxy/listener.js";
import { CloseReason } from "../proxy/session/close-reason.js";
import type { Session } from "../proxy/session/session.js";
import type { ConnectedUpstream } from "../proxy/upstream/upstream-pool.js";
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
   * Secures a connected upstream, bounded by the connect timeout: the pool's
   * secure step (UpstreamPool), which tries the next address when it fails.
   * `done` gets the TLS socket, or undefined and the TLS error code when the
   * handshake failed or the session ended meanwhile. Each handshake is counted
   * and the session's TLS fields record the last one.
   */
  originate(
    session: Session,
    settings: ListenerSettings,
    connected: ConnectedUpstream,
    hooks: ProxyHooks,
    done: (secured: TLSSocket | undefined, code?: string) => void,
  ): void {
    const tls = settings.upstreamTls;
    if (tls === undefined) {
      done(undefined);
      return;
    }
    void originateTls(connected.socket, connected.host, tls, settings.upstream.connectTimeoutMs, session.signal).then((result) => {
      if (result.ok) {
        hooks.tlsHandshake?.(settings.name, "upstream", "ok", result.durationMs);
        const secured: SessionTls = { ...session.tls, upstreamProtocol: result.protocol, upstreamCipher: result.cipher };
        delete secured.error; // an earlier address's failed handshake no longer describes the session
        session.tls = secured;
        done(result.socket);
        return;
      }
      if (result.cause !== "cancelled" && session.open) {
        hooks.tlsHandshake?.(settings.name, "upstream", result.cause, result.durationMs);
        session.tls = { ...session.tls, ...(result.code === undefined ? {} : { error: result.code }) };
      }
      done(undefined, result.code);
    });
  }
}
