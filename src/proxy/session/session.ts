import type { Socket } from "node:net";
import type { Logger } from "pino";
import { CloseReason, type Leg, isCleanClose, reasonForSocketError, sideOf } from "./close-reason.js";
import { formatHostPort, unmapIPv4 } from "../../util/host-port.js";
import type { SessionSummary, SessionTls } from "../hooks.js";
import { CancelSource, type CancelSignal } from "../../util/cancel-signal.js";
import type { SharedBufferForwarding } from "../../net/direct-forwarding.js";
import { kernelIdleMs, type TcpInfo } from "../../net/socket-options.js";

/**
 * The settings a session needs from its listener, fixed when it is accepted.
 * The listener's own settings object fits it and is shared by its sessions.
 */
export interface SessionSettings {
  /** The listener's name. */
  readonly name: string;
  /** 0 disables the idle timeout. */
  readonly idleTimeoutMs: number;
  /** After one side's FIN, reset both legs when no byte moves the other way for this long; 0 = off. */
  readonly halfCloseTimeoutMs: number;
}

/** What a session asks the kernel about its sockets (SocketOptions fits it). */
export interface LegControl {
  /** Closes a socket with a reset. */
  reset(socket: Socket): void;
  /** Whether an end of file read on this socket was really a reset. */
  resetBehindEnd(socket: Socket): boolean;
  /** The kernel's TCP_INFO for this socket, or undefined once it has no fd. */
  tcpInfo(socket: Socket): TcpInfo | undefined;
}

/** Who owns a session and hears when it has finished (the listener). */
export interface SessionOwner {
  sessionClosed(session: Session, summary: SessionSummary): void;
}

// Each socket of a session carries its session and its peer under these
// symbols, so the per-chunk handlers below are shared module functions:
// no closures per session, and nothing but a property load per chunk.
const kSession = Symbol("keepalive-proxy.session");
const kPeer = Symbol("keepalive-proxy.peer");

interface SessionSocket extends Socket {
  [kSession]: Session;
  [kPeer]: Socket | undefined;
}

/** Forwards a chunk to the peer; pauses this side while the peer's buffer is full. */
function forwardChunk(this: SessionSocket, chunk: Buffer): void {
  this[kSession].movedAt = Date.now();
  const peer = this[kPeer];
  if (peer !== undefined && !peer.write(chunk)) this.pause();
}

/**
 * Forwards a read that sits in the process's shared read buffer (see
 * DirectForwarding); false pauses this side until the peer's 'drain'.
 */
function forwardShared(this: SessionSocket, nread: number, buffer: Buffer): boolean {
  const session = this[kSession];
  session.movedAt = Date.now();
  const peer = this[kPeer];
  return peer === undefined || session.sendShared(peer, buffer, nread);
}

/** The peer's buffer drained: read from this side's peer again. */
function resumePeer(this: SessionSocket): void {
  this[kPeer]?.resume();
}

/** A FIN arrived: pass it on as a FIN once everything before it is written. */
function forwardEnd(this: SessionSocket): void {
  const session = this[kSession];
  if (session.resetBehindEnd(this)) {
    // Not a FIN but a reset whose error a write took first: never pass it on as a clean end.
    session.legResetBehindEnd(this);
    return;
  }
  session.legEnded(this);
  const peer = this[kPeer];
  if (peer !== undefined && !peer.destroyed) peer.end();
}

function legError(this: SessionSocket, error: NodeJS.ErrnoException): void {
  this[kSession].legFailed(this, error);
}

function legClosed(this: SessionSocket): void {
  this[kSession].socketClosed();
}

/** While the upstream connect is pending: keep what the client sends, up to one high-water mark. */
function holdChunk(this: SessionSocket, chunk: Buffer): void {
  this[kSession].hold(chunk);
}

/**
 * One client socket paired with one upstream socket. Bytes are copied both
 * ways with backpressure: a side is paused while its peer's write buffer is
 * full and resumed on 'drain', so no queue grows without bound. A FIN is
 * passed on as a FIN; an abortive end of either leg resets the other at once.
 * The first cause is kept and reported once, when both sockets have closed.
 */
export class Session {
  readonly startedAt = Date.now();
  /** `ip:port` of the client (as a PROXY header gave it, if one did), kept because a reset socket forgets its peer. */
  clientAddress: string;
  /** Connection-limit slots this session holds, released by its owner at close. */
  slots = 0;
  /** What its TLS legs negotiated (set by src/tls), reported in the `session closed` line. */
  tls: SessionTls | undefined;
  private maxDurationTimer: NodeJS.Timeout | undefined;
  private upstream: Socket | undefined;
  private upstreamAddress: string | undefined;
  private abortReason: CloseReason | undefined;
  private eofReason: CloseReason | undefined;
  private errno: string | undefined;
  private openSockets = 1;
  private finished = false;
  /**
   * Aborted when the session ends before its upstream is attached: the PROXY
   * header read, the DNS lookup, the backoff and the connect all honour it.
   * Made when first asked for and dropped once the upstream is attached, when
   * nothing waits on it any more.
   */
  private connectCancel: CancelSource | undefined;
  /** What the client sent while the upstream connect was pending (made on the first such chunk). */
  private held: Buffer[] | undefined;
  private heldBytes = 0;
  private idleTimer: QuietTimer | undefined;
  private halfCloseTimer: QuietTimer | undefined;
  /** Date.now() of the last chunk read on either leg, or of a FIN: what the idle and half-close timeouts count from. */
  movedAt = 0;

  constructor(
    readonly id: string,
    readonly client: Socket,
    private readonly settings: SessionSettings,
    private readonly sockets: LegControl,
    private readonly owner: SessionOwner,
    private readonly logger: Logger,
    private readonly direct?: SharedBufferForwarding,
  ) {
    this.clientAddress = formatAddress(client.remoteAddress, client.remotePort);
    const leg = client as SessionSocket;
    leg[kSession] = this;
    leg[kPeer] = undefined;
    client.on("error", legError);
    client.on("end", forwardEnd);
    // on(), not once(): 'close' comes once anyway, and once() costs a wrapper object and a bound function per socket.
    client.on("close", legClosed);
  }

  /**
   * Starts the session's own timers. The client leg's socket options need no
   * call here: the accepted socket inherited them from the listening socket.
   */
  begin(maxDurationMs: number): void {
    if (maxDurationMs > 0) this.maxDurationTimer = setTimeout(() => this.abort(CloseReason.ProxyMaxDuration), maxDurationMs);
  }

  /** Aborted when the session no longer needs an upstream (it ended, or was aborted). */
  get signal(): CancelSignal {
    if (this.connectCancel === undefined) {
      this.connectCancel = new CancelSource();
      if (this.abortReason !== undefined || this.finished) this.connectCancel.abort();
    }
    return this.connectCancel;
  }

  /** Ends whatever waits on `signal`; a no-op once the upstream is attached (the controller is gone). */
  private cancelWaits(): void {
    this.connectCancel?.abort();
  }

  /**
   * Reads the client while its upstream connect is pending, so that a client
   * that resets or fails is seen at once and its connect abandoned. What it
   * sends is held (at most one high-water mark; then reading pauses until the
   * upstream is attached) and forwarded first; a FIN is kept and passed on
   * after it, so a request-then-FIN client still gets its answer.
   */
  watchWhileConnecting(): void {
    if (this.upstream !== undefined || this.client.destroyed) return;
    this.client.on("data", holdChunk);
    this.client.resume();
  }

  /** Keeps one chunk sent before the upstream was attached (called by holdChunk). */
  hold(chunk: Buffer): void {
    if (this.held === undefined) this.held = [chunk];
    else this.held.push(chunk);
    this.heldBytes += chunk.length;
    if (this.heldBytes >= this.client.readableHighWaterMark) this.client.pause();
  }

  /** Records the original client address a PROXY protocol header carried. */
  setClientOrigin(address: string): void {
    this.clientAddress = address;
  }

  /** The listener's name, for observers. */
  get listener(): string {
    return this.settings.name;
  }

  /** `ip:port` of the upstream once a connect was started. */
  get upstreamPeer(): string | undefined {
    return this.upstreamAddress;
  }

  /** The upstream socket once connected, for /connections. */
  get upstreamSocket(): Socket | undefined {
    return this.upstream;
  }

  /** Whether the session has not finished yet. */
  get open(): boolean {
    return !this.finished;
  }

  /**
   * Takes over a connected upstream socket and starts copying both ways,
   * after `preamble` (a PROXY protocol header) when one is given.
   */
  attachUpstream(upstream: Socket, address: string, preamble?: Buffer): void {
    if (this.finished || this.abortReason !== undefined || this.client.destroyed) {
      upstream.destroy();
      return;
    }
    this.upstreamAddress = address;
    if (upstream.destroyed) {
      // It failed between its connect and now (an error the connector held for us).
      const errno = (upstream.errored as NodeJS.ErrnoException | null)?.code ?? "ECONNRESET";
      this.abort(reasonForSocketError("upstream", errno), errno);
      return;
    }
    this.upstream = upstream;
    this.connectCancel = undefined; // nothing waits on it any more
    this.openSockets += 1;
    const up = upstream as SessionSocket;
    const client = this.client as SessionSocket;
    up[kSession] = this;
    up[kPeer] = client;
    client[kPeer] = upstream;
    upstream.on("error", legError);
    upstream.on("end", forwardEnd);
    upstream.on("close", legClosed);
    if (this.settings.idleTimeoutMs > 0) {
      this.movedAt = Date.now();
      this.idleTimer = new QuietTimer(this, this.settings.idleTimeoutMs, CloseReason.ProxyIdleTimeout);
    }
    if (preamble) upstream.write(preamble);
    client.off("data", holdChunk);
    let upstreamWritable = true;
    if (this.held !== undefined) for (const chunk of this.held) upstreamWritable = upstream.write(chunk);
    this.held = undefined;
    this.heldBytes = 0;
    upstream.on("drain", resumePeer);
    client.on("drain", resumePeer);
    // 'data' still carries what a stream reads: a TLS leg's bytes, and any
    // the client's stream held before the switch below.
    upstream.on("data", forwardChunk);
    client.on("data", forwardChunk);
    const direct = this.direct;
    if (direct?.canAdopt(client) && direct.canAdopt(upstream)) {
      direct.adoptReads(client, forwardShared);
      direct.adoptReads(up, forwardShared);
    }
    // The client's FIN came while connecting: pass it on after what it sent.
    if (client.readableEnded) {
      upstream.end();
      this.startHalfCloseWatch(client);
    } else if (upstreamWritable) {
      // Paused since accept (pauseOnConnect) or by hold(): a 'data' listener alone does not start it.
      client.resume();
    } else {
      client.pause(); // the upstream's 'drain' resumes it
    }
    this.logger.debug({ sessionId: this.id, client: this.clientAddress, upstream: address }, "session established");
  }

  /**
   * Writes a read that sits in the shared buffer to `peer` before the next
   * read reuses it: straight to the kernel while nothing waits in Node's
   * write queue for that socket, else (and for whatever the kernel did not
   * take) as a copy through that queue. False when the queue is full, so the
   * reading side pauses until the peer's 'drain'.
   */
  sendShared(peer: Socket, buffer: Buffer, length: number): boolean {
    if (peer.destroyed || peer.writableEnded) return true; // the session is ending: nobody to deliver to
    let taken = 0;
    if (peer.writableLength === 0 && this.direct !== undefined) {
      taken = this.direct.send(peer, buffer, length);
      if (taken === length || taken < 0) return true; // all sent, or the peer failed (its 'error' ends the session)
    }
    return peer.write(Buffer.from(buffer.subarray(taken, length)));
  }

  /**
   * How long no byte has moved either way: since the last chunk read, unless
   * the kernel moved data on a leg more recently (bytes sent from its queue
   * to a slow reader, or received while the proxy held back reading).
   */
  quietMs(now: number): number {
    const sinceRead = now - this.movedAt;
    const kernelIdle = kernelIdleMs([this.sockets.tcpInfo(this.client), this.upstream && this.sockets.tcpInfo(this.upstream)]);
    return kernelIdle === null ? sinceRead : Math.min(sinceRead, kernelIdle);
  }

  /** Ends the session before an upstream was attached (connect failed or timed out). */
  failConnect(reason: CloseReason, errno: string | undefined, upstreamAddress: string | undefined): void {
    if (upstreamAddress !== undefined) this.upstreamAddress = upstreamAddress;
    this.abort(reason, errno);
  }

  /** Resets both legs now with this reason, unless a cause was already recorded. */
  abort(reason: CloseReason, errno?: string): void {
    this.recordAbort(reason, errno);
    this.sockets.reset(this.client);
    if (this.upstream) this.sockets.reset(this.upstream);
  }

  /** A leg failed: its errno becomes the reason (first cause wins) and the other leg is reset. */
  legFailed(socket: Socket, error: NodeJS.ErrnoException): void {
    const leg: Leg = socket === this.client ? "client" : "upstream";
    this.recordAbort(reasonForSocketError(leg, error.code), error.code);
    const other = leg === "client" ? this.upstream : this.client;
    if (other) this.sockets.reset(other);
  }

  /** The end of file read on `socket` was a reset: record it as one and reset both legs. */
  legResetBehindEnd(socket: Socket): void {
    const leg: Leg = socket === this.client ? "client" : "upstream";
    this.abort(reasonForSocketError(leg, "ECONNRESET"), "ECONNRESET");
  }

  /** Whether the end of file just read on `socket` hides a reset. */
  resetBehindEnd(socket: Socket): boolean {
    return this.sockets.resetBehindEnd(socket);
  }

  /** A leg sent FIN; the side that finished first names the clean reason. */
  legEnded(socket: Socket): void {
    this.eofReason ??= socket === this.client ? CloseReason.ClientEof : CloseReason.UpstreamEof;
    if (this.upstream === undefined) return; // still connecting: attachUpstream passes the FIN on
    if (this.halfCloseTimer === undefined) this.startHalfCloseWatch(socket);
    else this.stopHalfCloseWatch(); // both sides have sent FIN: nothing is half-open any more
  }

  /**
   * `finished` sent FIN; the session stays alive while bytes keep moving the
   * other way, and is reset once none has for halfCloseTimeoutMs.
   */
  private startHalfCloseWatch(finished: Socket): void {
    const timeoutMs = this.settings.halfCloseTimeoutMs;
    const still = finished === this.client ? this.upstream : this.client;
    if (timeoutMs <= 0 || still === undefined || this.finished) return;
    // Only the other leg can still read, so any chunk from now on moved that way.
    this.movedAt = Date.now();
    this.halfCloseTimer = new QuietTimer(this, timeoutMs, CloseReason.ProxyHalfCloseTimeout);
  }

  private stopHalfCloseWatch(): void {
    this.halfCloseTimer?.stop();
    this.halfCloseTimer = undefined;
  }

  private recordAbort(reason: CloseReason, errno: string | undefined): void {
    if (this.abortReason !== undefined) return;
    this.abortReason = reason;
    this.errno = errno;
    // Whatever the session was waiting for (a PROXY header, a connect) is no longer wanted.
    this.cancelWaits();
  }

  /** One of the session's sockets closed; the session finishes with the last. */
  socketClosed(): void {
    this.openSockets -= 1;
    if (this.openSockets > 0) return;
    if (this.upstream === undefined && this.abortReason === undefined) {
      // The client went away while the upstream connect was still pending; the
      // listener sees `open` is false and drops the upstream when it arrives.
      this.recordAbort(CloseReason.ClientReset, undefined);
    }
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.cancelWaits();
    this.held = undefined;
    this.idleTimer?.stop();
    if (this.maxDurationTimer) clearTimeout(this.maxDurationTimer);
    this.stopHalfCloseWatch();
    const reason = this.abortReason ?? this.eofReason ?? CloseReason.ClientEof;
    this.owner.sessionClosed(this, {
      sessionId: this.id,
      listener: this.settings.name,
      client: this.clientAddress,
      upstream: this.upstreamAddress,
      reason,
      side: sideOf(reason),
      clean: isCleanClose(reason),
      errno: this.errno,
      bytesFromClient: this.client.bytesRead,
      bytesFromUpstream: this.upstream?.bytesRead ?? 0,
      durationMs: Date.now() - this.startedAt,
      tls: this.tls,
    });
  }
}

/**
 * Resets a session once no byte has moved for `timeoutMs` (judged by its
 * quietMs): one timer per session, re-armed for the remainder when it fires
 * early, rather than a timer refreshed on every chunk.
 */
class QuietTimer {
  private timer: NodeJS.Timeout;

  constructor(
    private readonly session: Session,
    private readonly timeoutMs: number,
    private readonly reason: CloseReason,
  ) {
    this.timer = setTimeout(this.check, timeoutMs);
  }

  private readonly check = (): void => {
    // The kernel is asked only once the proxy itself has seen nothing for the whole timeout.
    const now = Date.now();
    const sinceRead = now - this.session.movedAt;
    const quietMs = sinceRead >= this.timeoutMs ? this.session.quietMs(now) : sinceRead;
    if (quietMs >= this.timeoutMs) this.session.abort(this.reason);
    else this.timer = setTimeout(this.check, this.timeoutMs - quietMs);
  };

  stop(): void {
    clearTimeout(this.timer);
  }
}

/** `ip:port`, with brackets around IPv6 addresses. */
export function formatAddress(host: string | undefined, port: number | undefined): string {
  if (host === undefined) return "unknown";
  return formatHostPort({ host: unmapIPv4(host), port: port ?? 0 });
}
