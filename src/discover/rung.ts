import type { Socket } from "node:net";
import type { SocketOptions } from "../net/socket-options.js";
import { connectOnce } from "../proxy/upstream/upstream-connector.js";

/**
 * One rung of a discovery run: one connection to one upstream address that
 * stays idle for T seconds with TCP_KEEPIDLE = T, so the kernel's first
 * keepalive probe asks the path whether it still holds the flow. No payload
 * byte is ever written; a probe carries none.
 */

/** What a rung found, from a closed list. */
export const RungResult = {
  /** The first probe after T of idle was ACKed: the path held the flow. */
  survived: "survived",
  /** The probes went unanswered (ETIMEDOUT, or an ICMP error): a middlebox forgot the flow and drops it. */
  forgotten: "forgotten",
  /** The probe was answered with a reset: a middlebox made a new mapping the server does not know, or rejects. */
  reset: "reset",
  /** The upstream closed the connection itself (FIN): its own timeout, not the path's; not counted. */
  closed: "closed",
  /** Neither an ACK nor an error came by T + the probes' time: not counted. */
  undecided: "undecided",
  /** Another socket error, or the kernel refused an option: not counted. */
  error: "error",
  /** The connection could not be opened, so the rung measured nothing. */
  notConnected: "not_connected",
} as const;
export type RungResult = (typeof RungResult)[keyof typeof RungResult];

/** Which pass a rung belongs to. */
export type RungPass = "ladder" | "refine";

/** The outcome of one rung. */
export interface RungOutcome {
  readonly idleS: number;
  readonly pass: RungPass;
  readonly result: RungResult;
  /** The errno that decided it (ETIMEDOUT, ECONNRESET, …), if any. */
  readonly errno: string | undefined;
  /** From the connect to the moment the result was known. */
  readonly decidedAfterMs: number;
  /** Bytes the upstream sent unasked (a banner); they restart the idle time and are discarded. */
  readonly bytesReceived: number;
}

/** How rung sockets probe once T has passed. */
export interface ProbeTiming {
  /** TCP_KEEPINTVL, whole seconds. */
  readonly intervalS: number;
  /** TCP_KEEPCNT: unanswered probes before the kernel aborts with ETIMEDOUT. */
  readonly count: number;
}

/**
 * A probe every second and ETIMEDOUT after two unanswered: a forgotten flow is
 * decided 2 s after T, and one lost probe or ACK is not mistaken for a
 * forgotten flow. A path whose round trip exceeds 2 s would be, which no NAT
 * path an operator tunes keepalive for has.
 */
export const DEFAULT_PROBE_TIMING: ProbeTiming = { intervalS: 1, count: 2 } as const;

/** How often TCP_INFO is read once T has passed (one getsockopt, about 2 µs). */
const POLL_MS = 100;
/**
 * The kernel sends the first probe no earlier than T after the last segment
 * received, counted in jiffies (1 to 10 ms each); an ACK that came at least
 * T minus this after the quiet began answers a probe.
 */
const JIFFY_TOLERANCE_MS = 50;

/** What a rung needs from its caller. */
export interface RungDeps {
  readonly socketOptions: SocketOptions;
  readonly probe: ProbeTiming;
  readonly connectTimeoutMs: number;
}

/** A rung whose connect succeeded, still being measured, or why it did not connect. */
export type OpenedRung = { readonly ok: true; readonly outcome: Promise<RungOutcome> } | { readonly ok: false; readonly outcome: RungOutcome };

/**
 * Connects one rung to ip:port and, once connected, starts measuring it.
 * Resolves when the connect is decided, so the caller can tell an
 * unreachable upstream at once; never rejects.
 */
export async function openRung(ip: string, port: number, idleS: number, pass: RungPass, deps: RungDeps): Promise<OpenedRung> {
  const connected = await connectOnce(ip, port, deps.connectTimeoutMs, new AbortController().signal);
  if (!connected.ok) {
    const outcome = { idleS, pass, result: RungResult.notConnected, errno: connected.errno, decidedAfterMs: connected.durationMs, bytesReceived: 0 };
    return { ok: false, outcome };
  }
  const refused = deps.socketOptions.apply(connected.socket, {
    keepalive: true,
    keepaliveIdleMs: idleS * 1000,
    keepaliveIntervalMs: deps.probe.intervalS * 1000,
    keepaliveCount: deps.probe.count,
    // 0 keeps the kernel default: a user timeout would replace TCP_KEEPCNT as the abort rule.
    userTimeoutMs: 0,
    noDelay: true,
  });
  if (refused[0] !== undefined) {
    connected.socket.destroy();
    return { ok: false, outcome: { idleS, pass, result: RungResult.error, errno: refused[0].errno, decidedAfterMs: 0, bytesReceived: 0 } };
  }
  return { ok: true, outcome: watchRung(connected.socket, idleS, pass, deps) };
}

/** Waits for the rung's answer: an ACKed probe, a reset, a timeout, or the upstream's own close. */
function watchRung(socket: Socket, idleS: number, pass: RungPass, deps: RungDeps): Promise<RungOutcome> {
  const idleMs = idleS * 1000;
  const connectedAt = performance.now();
  // When the quiet began: the handshake's last ACK, or the last byte the upstream sent unasked.
  let quietFrom = ackTime(deps.socketOptions, socket) ?? connectedAt;
  let bytesReceived = 0;
  return new Promise((resolve) => {
    let done = false;
    const finish = (result: RungResult, errno: string | undefined, at = performance.now()): void => {
      if (done) return;
      done = true;
      clearInterval(poller);
      // A FIN, not a reset: the upstream application sees a client that connected and left without a byte.
      socket.destroy();
      resolve({ idleS, pass, result, errno, decidedAfterMs: Math.max(0, at - connectedAt), bytesReceived });
    };
    socket.on("data", (chunk: Buffer) => {
      bytesReceived += chunk.length;
      quietFrom = performance.now();
    });
    socket.on("error", (error: NodeJS.ErrnoException) => finish(classifyRungError(error.code), error.code));
    socket.on("end", () => finish(RungResult.closed, undefined));
    socket.on("close", () => finish(RungResult.closed, undefined));
    // Give up once the kernel would have aborted and a probe interval more has passed.
    const verdictWindowMs = deps.probe.intervalS * (deps.probe.count + 1) * 1000;
    const poller = setInterval(() => {
      const now = performance.now();
      if (now < quietFrom + idleMs) return;
      const ackedAt = ackTime(deps.socketOptions, socket);
      if (ackedAt !== undefined && ackedAt - quietFrom >= idleMs - JIFFY_TOLERANCE_MS) finish(RungResult.survived, undefined, ackedAt);
      else if (now > quietFrom + idleMs + verdictWindowMs) finish(RungResult.undecided, undefined);
    }, POLL_MS);
  });
}

/** When the last ACK arrived, on the performance.now() clock, from TCP_INFO; undefined once the socket is gone. */
function ackTime(socketOptions: SocketOptions, socket: Socket): number | undefined {
  const info = socketOptions.tcpInfo(socket);
  return info === undefined ? undefined : performance.now() - info.lastAckReceivedMs;
}

/** Maps the errno that ended an idle rung to its result. Pure. */
export function classifyRungError(code: string | undefined): RungResult {
  switch (code) {
    case "ECONNRESET":
      return RungResult.reset;
    case "ETIMEDOUT":
    // An ICMP error answering a probe replaces ETIMEDOUT when the probes run out.
    case "EHOSTUNREACH":
    case "ENETUNREACH":
    case "EHOSTDOWN":
    case "ENETDOWN":
      return RungResult.forgotten;
    default:
      return RungResult.error;
  }
}
