import type { Server, Socket } from "node:net";
import { constants as osConstants } from "node:os";
import { TLSSocket } from "node:tls";
import type { Libc } from "./libc.js";

/** What one leg (client or upstream) of every session is given. */
export interface LegOptions {
  /** SO_KEEPALIVE. When false the keepalive timings below are not set. */
  readonly keepalive: boolean;
  /** TCP_KEEPIDLE: idle time before the first probe. Whole seconds, kernel unit. */
  readonly keepaliveIdleMs: number;
  /** TCP_KEEPINTVL: time between unanswered probes. Whole seconds. */
  readonly keepaliveIntervalMs: number;
  /** TCP_KEEPCNT: unanswered probes before the kernel gives up with ETIMEDOUT. */
  readonly keepaliveCount: number;
  /** TCP_USER_TIMEOUT in ms; 0 leaves the kernel default (retransmit for ~15 min). */
  readonly userTimeoutMs: number;
  /** TCP_NODELAY: no Nagle delay, since the proxy forwards what it reads at once. */
  readonly noDelay: boolean;
}

/** The options as the kernel reports them now, in the kernel's own units. */
export interface KernelLegOptions {
  readonly keepalive: boolean;
  readonly keepaliveIdleSeconds: number;
  readonly keepaliveIntervalSeconds: number;
  readonly keepaliveCount: number;
  readonly userTimeoutMs: number;
  readonly noDelay: boolean;
}

/** The TCP_INFO fields an operator needs to judge a leg. */
export interface TcpInfo {
  readonly state: string;
  readonly rttUs: number;
  readonly rttVarUs: number;
  readonly unackedSegments: number;
  readonly retransmits: number;
  readonly totalRetransmits: number;
  readonly keepaliveProbesSent: number;
  readonly lastDataReceivedMs: number;
  readonly lastDataSentMs: number;
  readonly lastAckReceivedMs: number;
}

/**
 * How long no data has moved on any of these legs, as their kernels tell it:
 * the least of each leg's time since data was last received and last sent
 * (sent counts what the kernel transmits from its queue, so a slow reader
 * still draining old bytes is not idle). Null when no leg has a TCP_INFO.
 */
export function kernelIdleMs(infos: readonly (TcpInfo | null | undefined)[]): number | null {
  let idle: number | null = null;
  for (const info of infos) {
    if (info === null || info === undefined) continue;
    const leg = Math.min(info.lastDataReceivedMs, info.lastDataSentMs);
    idle = idle === null ? leg : Math.min(idle, leg);
  }
  return idle;
}

const SOL_SOCKET = 1;
/** tcpi_state of a connection that is gone (include/net/tcp_states.h: TCP_CLOSE). */
const TCP_STATE_CLOSE = 7;
const SO_KEEPALIVE = 9;
const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const TCP_KEEPIDLE = 4;
const TCP_KEEPINTVL = 5;
const TCP_KEEPCNT = 6;
const TCP_INFO = 11;
const TCP_USER_TIMEOUT = 18;
const TCP_INFO_SIZE = 232;

const TCP_STATES = [
  "UNKNOWN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
  "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
] as const;

/** One option the kernel refused, with the errno name it answered. */
export interface OptionFailure {
  readonly option: string;
  readonly value: number;
  readonly errno: string;
}

/**
 * The only module that knows how socket options reach the kernel. Node's
 * setKeepAlive is not used: on Node 20 it fixes the interval at 1 s and the
 * count at 10, and no Node sets TCP_USER_TIMEOUT, so every option goes through
 * setsockopt on the socket's fd, identically on every Node version.
 */
export class SocketOptions {
  constructor(private readonly libc: Libc) {}

  /**
   * Applies a leg's options to a newly connected socket, one system call per
   * option that differs from a new socket's default. Returns what the kernel
   * refused (usually nothing). Only TCP_NODELAY goes through Node's own
   * setter: setKeepAlive would cost four calls (libuv also sets an interval
   * of 1 s and 10 probes, which would then have to be set again), and on
   * this kind of machine each system call costs about 2 µs.
   */
  apply(socket: Socket, options: LegOptions): OptionFailure[] {
    const fd = fdOf(socket);
    if (fd === undefined) return [{ option: "fd", value: -1, errno: "EBADF" }];
    socket.setNoDelay(options.noDelay);
    const failures: OptionFailure[] = [];
    // A new socket has keepalive off and a user timeout of 0 (the kernel default), so neither needs a call to stay so.
    if (options.keepalive) {
      this.set(fd, failures, "SO_KEEPALIVE", SOL_SOCKET, SO_KEEPALIVE, 1);
      this.set(fd, failures, "TCP_KEEPIDLE", IPPROTO_TCP, TCP_KEEPIDLE, toSeconds(options.keepaliveIdleMs));
      this.set(fd, failures, "TCP_KEEPINTVL", IPPROTO_TCP, TCP_KEEPINTVL, toSeconds(options.keepaliveIntervalMs));
      this.set(fd, failures, "TCP_KEEPCNT", IPPROTO_TCP, TCP_KEEPCNT, options.keepaliveCount);
    }
    if (options.userTimeoutMs > 0) {
      this.set(fd, failures, "TCP_USER_TIMEOUT", IPPROTO_TCP, TCP_USER_TIMEOUT, options.userTimeoutMs);
    }
    return failures;
  }

  /**
   * Applies a leg's options to a listening socket. Linux copies them to every
   * socket it accepts (the child is a clone of the listener, keepalive timer
   * included), so the client leg costs nothing per connection. Tests read the
   * accepted sockets' options back to prove it.
   */
  applyToListener(server: Server, options: LegOptions): OptionFailure[] {
    const fd = (server as unknown as HandleWithFd)._handle?.fd;
    if (typeof fd !== "number" || fd < 0) return [{ option: "fd", value: -1, errno: "EBADF" }];
    return this.applyToFd(fd, options);
  }

  private set(fd: number, failures: OptionFailure[], option: string, level: number, name: number, value: number): void {
    const errno = this.libc.setInt(fd, level, name, value);
    if (errno !== 0) failures.push({ option, value, errno: errnoName(errno) });
  }

  /**
   * Closes a socket abortively, so its peer sees a reset, not an orderly end.
   * Node's resetAndDestroy cannot do it once the socket has sent its FIN
   * (libuv refuses to reset a handle that was shut down, and the close is then
   * orderly), which is exactly the case of a half-closed session cut by a
   * timeout; there SO_LINGER with a zero timeout makes close() send the RST.
   * A socket still connecting has no peer to tell: it is just destroyed.
   */
  reset(socket: Socket): void {
    if (socket.destroyed) return;
    if (socket.connecting) {
      socket.destroy();
      return;
    }
    // A TLS socket's handle is not a TCP handle, so resetAndDestroy refuses it; the linger way works on its fd.
    if (socket.writableEnded || socket instanceof TLSSocket) {
      const fd = fdOf(socket);
      if (fd !== undefined) this.libc.setLinger(fd, 0);
      socket.destroy();
      return;
    }
    socket.resetAndDestroy();
  }

  /**
   * Whether the kernel has this connection in CLOSE after reading its end: a
   * reset behind an end of file. When a write meets a peer's RST first, the
   * write takes the ECONNRESET and a read after it sees only end of file
   * (tcp_recvmsg finds no error left, and the receive side shut), so Node
   * emits 'end' as for a FIN. A real FIN leaves CLOSE_WAIT (or TIME_WAIT
   * after our own FIN); only a reset leaves CLOSE at that point. Once we have
   * sent our own FIN, CLOSE is also where an orderly close ends (LAST_ACK
   * acknowledged), so such a socket is never judged.
   */
  resetBehindEnd(socket: Socket): boolean {
    if (socket.writableEnded) return false;
    const fd = fdOf(socket);
    if (fd === undefined) return false;
    const head = this.libc.getBytes(fd, IPPROTO_TCP, TCP_INFO, 8);
    return head !== undefined && head.length > 0 && head.readUInt8(0) === TCP_STATE_CLOSE;
  }

  /** Reads back what the kernel holds for this socket now, or undefined once it has no fd. */
  read(socket: Socket): KernelLegOptions | undefined {
    const fd = fdOf(socket);
    return fd === undefined ? undefined : this.readFd(fd);
  }

  /** Reads TCP_INFO for this socket, or undefined once it has no fd. */
  tcpInfo(socket: Socket): TcpInfo | undefined {
    const fd = fdOf(socket);
    if (fd === undefined) return undefined;
    const buf = this.libc.getBytes(fd, IPPROTO_TCP, TCP_INFO, TCP_INFO_SIZE);
    if (!buf || buf.length < 104) return undefined;
    return {
      state: TCP_STATES[buf.readUInt8(0)] ?? "UNKNOWN",
      retransmits: buf.readUInt8(2),
      keepaliveProbesSent: buf.readUInt8(3),
      unackedSegments: buf.readUInt32LE(24),
      lastDataSentMs: buf.readUInt32LE(44),
      lastDataReceivedMs: buf.readUInt32LE(52),
      lastAckReceivedMs: buf.readUInt32LE(56),
      rttUs: buf.readUInt32LE(68),
      rttVarUs: buf.readUInt32LE(72),
      totalRetransmits: buf.readUInt32LE(100),
    };
  }

  /**
   * Applies the options to a throwaway socket and reads them back, so that a
   * kernel that refuses or clamps one is reported once at startup rather than
   * silently on every connection. Returns a description of each mismatch.
   */
  verify(options: LegOptions, family: 4 | 6 = 4): string[] {
    const fd = this.libc.openTcpSocket(family);
    if (fd < 0) return [`cannot open a test socket: ${errnoName(-fd)}`];
    try {
      const problems = this.applyToFd(fd, options).map(
        (f) => `the kernel refused ${f.option}=${f.value} (${f.errno})`,
      );
      const got = this.readFd(fd);
      const want = expectedKernelOptions(options);
      for (const key of Object.keys(want) as (keyof KernelLegOptions)[]) {
        if (!options.keepalive && key.startsWith("keepalive") && key !== "keepalive") continue;
        if (got[key] !== want[key]) problems.push(`${key}: asked for ${want[key]}, the kernel holds ${got[key]}`);
      }
      return problems;
    } finally {
      this.libc.closeFd(fd);
    }
  }

  private applyToFd(fd: number, o: LegOptions): OptionFailure[] {
    const failures: OptionFailure[] = [];
    const set = (option: string, level: number, name: number, value: number): void => this.set(fd, failures, option, level, name, value);
    set("SO_KEEPALIVE", SOL_SOCKET, SO_KEEPALIVE, o.keepalive ? 1 : 0);
    if (o.keepalive) {
      set("TCP_KEEPIDLE", IPPROTO_TCP, TCP_KEEPIDLE, toSeconds(o.keepaliveIdleMs));
      set("TCP_KEEPINTVL", IPPROTO_TCP, TCP_KEEPINTVL, toSeconds(o.keepaliveIntervalMs));
      set("TCP_KEEPCNT", IPPROTO_TCP, TCP_KEEPCNT, o.keepaliveCount);
    }
    set("TCP_USER_TIMEOUT", IPPROTO_TCP, TCP_USER_TIMEOUT, o.userTimeoutMs);
    set("TCP_NODELAY", IPPROTO_TCP, TCP_NODELAY, o.noDelay ? 1 : 0);
    return failures;
  }

  private readFd(fd: number): KernelLegOptions {
    const get = (level: number, name: number): number => {
      const r = this.libc.getInt(fd, level, name);
      return "value" in r ? r.value : -1;
    };
    return {
      keepalive: get(SOL_SOCKET, SO_KEEPALIVE) !== 0,
      keepaliveIdleSeconds: get(IPPROTO_TCP, TCP_KEEPIDLE),
      keepaliveIntervalSeconds: get(IPPROTO_TCP, TCP_KEEPINTVL),
      keepaliveCount: get(IPPROTO_TCP, TCP_KEEPCNT),
      userTimeoutMs: get(IPPROTO_TCP, TCP_USER_TIMEOUT),
      noDelay: get(IPPROTO_TCP, TCP_NODELAY) !== 0,
    };
  }
}

/** What the kernel should report for these options, in its units. */
export function expectedKernelOptions(o: LegOptions): KernelLegOptions {
  return {
    keepalive: o.keepalive,
    keepaliveIdleSeconds: toSeconds(o.keepaliveIdleMs),
    keepaliveIntervalSeconds: toSeconds(o.keepaliveIntervalMs),
    keepaliveCount: o.keepaliveCount,
    userTimeoutMs: o.userTimeoutMs,
    noDelay: o.noDelay,
  };
}

function toSeconds(ms: number): number {
  return Math.round(ms / 1000);
}

interface HandleWithFd {
  _handle?: { fd?: number } | null;
}

/** The socket's fd from Node's internal TCP handle; undefined when closed or not yet open. */
export function fdOf(socket: Socket): number | undefined {
  const fd = (socket as unknown as HandleWithFd)._handle?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : undefined;
}

const ERRNO_NAMES = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, value]) => [value, name]),
);

/** E-name for an errno number, e.g. 22 → EINVAL. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}
