import { Socket } from "node:net";
import { formatHostPort } from "../../util/host-port.js";
import type { CancelSignal } from "../../util/cancel-signal.js";
import { settleOnce } from "../../util/settle-once.js";
import type { ConnectResult } from "../hooks.js";

/**
 * A connected upstream socket, or why there is none. `cancelled` means the
 * proxy abandoned the wait (see the signal below); `local` means the proxy
 * itself had no descriptor or buffer for the socket (EMFILE, ENFILE, ENOBUFS,
 * ENOMEM), which says nothing about the upstream.
 */
export type ConnectOutcome =
  | { readonly ok: true; readonly socket: Socket; readonly address: string; readonly durationMs: number; readonly host?: string }
  | {
      readonly ok: false;
      /** `local`: the proxy's own resources failed; `handshake`: the last attempt connected but failed its secure step (TLS), with its error code as errno. */
      readonly result: Exclude<ConnectResult, "ok"> | "local" | "handshake";
      readonly errno: string | undefined;
      readonly address: string | undefined;
      readonly durationMs: number;
    };

/** Prepares a freshly connected socket (its leg's socket options) before anyone else sees it. */
export type SocketPreparer = (socket: Socket) => void;

/** The errnos that mean the proxy is out of its own resources, not that the peer failed. */
const LOCAL_RESOURCE_ERRNOS: ReadonlySet<string> = new Set(["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]);

/** Whether an errno is the proxy's own shortage (descriptors, buffers, memory). */
export function isLocalResourceErrno(code: string | undefined): boolean {
  return code !== undefined && LOCAL_RESOURCE_ERRNOS.has(code);
}

/**
 * Stays on a connected upstream socket from the moment its connect settles
 * until the session takes it over (releaseConnected): an error in between
 * destroys the socket (the session sees it destroyed, with the error in
 * `socket.errored`) instead of crashing the process. Module-level, so that
 * nothing of the connect attempt (its timer, closures, promise) stays
 * reachable from a socket that lives for days.
 */
function heldUntilAttached(): void {}

/**
 * The session has its own error listener now: drop the placeholder. A socket
 * already destroyed (it failed before the session took it, or the session had
 * ended) keeps it, since an error it queued may still be emitted.
 */
export function releaseConnected(socket: Socket): void {
  if (!socket.destroyed) socket.removeListener("error", heldUntilAttached);
}

/** Hears how one connect attempt ended, exactly once. */
export type ConnectDone = (outcome: ConnectOutcome) => void;

/**
 * One TCP connect to an IP address, bounded by a timeout and by `signal`,
 * reported to `done` exactly once (synchronously when the signal is already
 * aborted). Never throws: every failure becomes an outcome with its result
 * and errno. The socket's options are applied by `prepare` the moment it
 * connects, where the socket is made (as undici's connector does), so the
 * session only ever pairs two ready sockets. An aborted signal destroys the
 * socket at once and settles as `cancelled`. Once settled, the attempt's
 * listeners are removed (a socket that failed keeps a no-op error listener,
 * since an error already queued may still be emitted), so a long session
 * holds nothing of it. A callback rather than a promise: this runs for every
 * session, and the proxy's connect path is a chain of callbacks with no
 * microtask hop or promise per step.
 */
export function startConnect(
  ip: string,
  port: number,
  timeoutMs: number,
  signal: CancelSignal,
  prepare: SocketPreparer | undefined,
  /** `ip:port` as the outcome reports it; a caller that keeps one passes it, so a session does not make its own. */
  address: string,
  done: ConnectDone,
): void {
  const started = performance.now();
  if (signal.aborted) {
    done({ ok: false, result: "cancelled", errno: undefined, address, durationMs: 0 });
    return;
  }
  const socket = new Socket({ allowHalfOpen: true });
  const failed = (result: Exclude<ConnectResult, "ok"> | "local", errno: string | undefined): ConnectOutcome => ({
    ok: false,
    result,
    errno,
    address,
    durationMs: performance.now() - started,
  });
  const finish = settleOnce<ConnectOutcome>(
    { timeoutMs, signal, onTimeout: () => failed("timeout", "ETIMEDOUT"), onAbort: () => failed("cancelled", undefined) },
    (outcome) => {
      socket.removeListener("error", onError);
      socket.removeListener("connect", onConnect);
      socket.on("error", heldUntilAttached);
      // Options are applied where the socket is made, before anyone else sees it.
      if (outcome.ok) prepare?.(socket);
      else socket.destroy();
      done(outcome);
    },
  );
  // Plain listeners rather than once(): once() wraps each in a bound function.
  const onError = (error: NodeJS.ErrnoException): void =>
    finish(failed(isLocalResourceErrno(error.code) ? "local" : classifyConnectError(error.code), error.code));
  const onConnect = (): void => finish({ ok: true, socket, address, durationMs: performance.now() - started });
  socket.on("error", onError);
  socket.on("connect", onConnect);
  socket.connect({ host: ip, port });
}

/** startConnect as a promise, for callers outside the session path (discover). Never rejects. */
export function connectOnce(
  ip: string,
  port: number,
  timeoutMs: number,
  signal: CancelSignal,
  prepare?: SocketPreparer,
  address: string = formatHostPort({ host: ip, port }),
): Promise<ConnectOutcome> {
  return new Promise((resolve) => startConnect(ip, port, timeoutMs, signal, prepare, address, resolve));
}

/** Maps a connect errno to its ConnectResult label. Pure. */
export function classifyConnectError(code: string | undefined): Exclude<ConnectResult, "ok" | "cancelled"> {
  switch (code) {
    case "ECONNREFUSED":
      return "refused";
    case "EHOSTUNREACH":
    case "ENETUNREACH":
    case "EHOSTDOWN":
    case "ENETDOWN":
    case "EADDRNOTAVAIL":
      return "unreachable";
    case "ETIMEDOUT":
      return "timeout";
    case "ENOTFOUND":
    case "EAI_AGAIN":
    case "EAI_FAIL":
    case "EAI_NODATA":
      return "dns_failure";
    default:
      return "error";
  }
}
