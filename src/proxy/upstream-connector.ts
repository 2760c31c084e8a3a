import { Socket } from "node:net";
import { formatHostPort } from "../util/host-port.js";
import type { ConnectResult } from "./hooks.js";

/** A connected upstream socket, or why there is none. */
export type ConnectOutcome =
  | { readonly ok: true; readonly socket: Socket; readonly address: string; readonly durationMs: number }
  | {
      readonly ok: false;
      readonly result: Exclude<ConnectResult, "ok">;
      readonly errno: string | undefined;
      readonly address: string | undefined;
      readonly durationMs: number;
    };

/** A pending connect that the caller can abandon (the client went away). */
export interface PendingConnect {
  readonly done: Promise<ConnectOutcome>;
  cancel(): void;
}

/**
 * One TCP connect to an IP address, bounded by a timeout. Never rejects:
 * every failure becomes an outcome with a ConnectResult and the errno.
 */
export function connectOnce(ip: string, port: number, timeoutMs: number): PendingConnect {
  const started = performance.now();
  const address = formatHostPort({ host: ip, port });
  const socket = new Socket({ allowHalfOpen: true });
  let settle!: (outcome: ConnectOutcome) => void;
  const done = new Promise<ConnectOutcome>((resolve) => {
    settle = resolve;
  });
  let settled = false;
  const fail = (result: Exclude<ConnectResult, "ok">, errno: string | undefined): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    socket.destroy();
    settle({ ok: false, result, errno, address, durationMs: performance.now() - started });
  };
  const timer = setTimeout(() => fail("timeout", "ETIMEDOUT"), timeoutMs);
  socket.once("error", (error: NodeJS.ErrnoException) => fail(classifyConnectError(error.code), error.code));
  socket.once("connect", () => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    socket.removeAllListeners("error");
    settle({ ok: true, socket, address, durationMs: performance.now() - started });
  });
  socket.connect({ host: ip, port });
  return { done, cancel: () => fail("error", "ECANCELED") };
}

/** Maps a connect errno to its ConnectResult label. Pure. */
export function classifyConnectError(code: string | undefined): Exclude<ConnectResult, "ok"> {
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
