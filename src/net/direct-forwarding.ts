import { Socket } from "node:net";
import { constants as osConstants } from "node:os";
import { TLSSocket } from "node:tls";
import { getSystemErrorName } from "node:util";
import type { Libc } from "./libc.js";
import { fdOf } from "./socket-options.js";

/**
 * Called with each read of an adopted socket, as a method of that socket. The
 * bytes are in `buffer`, shared by every adopted socket of the process: they
 * must be used up before the callback returns. Returning false stops reading
 * until the socket's resume().
 */
export type SharedReadCallback<S extends Socket = Socket> = (this: S, nread: number, buffer: Buffer) => boolean;

/** What a session needs to forward between two plain TCP sockets without a buffer per read. */
export interface SharedBufferForwarding {
  /** Whether this socket's reads can go to the shared buffer (a plain TCP socket with an open handle). */
  canAdopt(socket: Socket): boolean;
  /** From now on the socket's reads go to `onRead` with the shared buffer, no longer to 'data'. */
  adoptReads<S extends Socket>(socket: S, onRead: SharedReadCallback<S>): void;
  /**
   * Writes `length` bytes of `buffer` straight to the socket's kernel send
   * buffer, bypassing Node's write queue (call it only while that queue is
   * empty). Returns how many bytes the kernel took: all, some, or 0 when its
   * buffer is full. On any other failure the socket is destroyed with the
   * errno, as Node's own write would, and -1 is returned.
   */
  send(socket: Socket, buffer: Buffer, length: number): number;
}

/** What Node reads into per call anyway (libuv's suggested size for a TCP read). */
const READ_BUFFER_BYTES = 64 * 1024;
const EAGAIN = osConstants.errno.EAGAIN;

/**
 * Node's reads allocate a fresh buffer per read (64 KiB, cut to what was
 * read) and pass it through the Readable stream machinery; its writes build a
 * request object per chunk and go through the Writable machinery. For a
 * proxy, whose every read is written out at once, that is most of its own
 * CPU: measured here at 0.6 s per GB moved in bulk (the kernel's share is
 * about 1 s) and 5 µs per small request and answer.
 *
 * This does what HAProxy does instead: every adopted socket reads into one
 * buffer that stays warm in the cache, and the read is written out with one
 * send(2) while the kernel has room, which it has nearly always. Only what it
 * does not take is copied into Node's write queue, with the usual
 * backpressure from there on.
 *
 * The reads use Node's `onread` socket option (a caller-supplied buffer and
 * callback instead of 'data'), which Node offers only at construction. The
 * listener's accepted sockets are constructed by Node, so the option is
 * applied to them the way the constructor applies it: the three fields it
 * sets, found by name on a socket constructed with the option, and the
 * handle's useUserBuffer. `create` returns undefined when a Node version
 * lacks any of them, and sessions then forward through streams as before.
 */
export class DirectForwarding implements SharedBufferForwarding {
  private readonly buffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);

  private constructor(
    private readonly libc: Libc,
    private readonly fields: OnreadFields,
  ) {}

  /** The forwarding for this process, or undefined when this Node cannot take a shared read buffer. */
  static create(libc: Libc): DirectForwarding | undefined {
    const fields = findOnreadFields();
    return fields === undefined ? undefined : new DirectForwarding(libc, fields);
  }

  canAdopt(socket: Socket): boolean {
    if (socket instanceof TLSSocket || socket.destroyed || socket.connecting) return false;
    return typeof (socket as unknown as WithHandle)._handle?.useUserBuffer === "function";
  }

  adoptReads<S extends Socket>(socket: S, onRead: SharedReadCallback<S>): void {
    const fields = socket as unknown as Record<symbol, unknown>;
    fields[this.fields.buffer] = this.buffer;
    fields[this.fields.callback] = onRead;
    fields[this.fields.generator] = null;
    (socket as unknown as WithHandle)._handle?.useUserBuffer?.(this.buffer);
  }

  send(socket: Socket, buffer: Buffer, length: number): number {
    const fd = fdOf(socket);
    if (fd === undefined) return 0; // closing: Node's queue takes the bytes and fails them as it would have
    const sent = this.libc.send(fd, buffer, length);
    if (sent >= 0) return sent;
    if (-sent === EAGAIN) return 0;
    socket.destroy(sendError(-sent));
    return -1;
  }
}

/** The fields net.Socket's constructor sets for its `onread` option. */
interface OnreadFields {
  readonly buffer: symbol;
  readonly callback: symbol;
  readonly generator: symbol;
}

interface WithHandle {
  _handle?: { useUserBuffer?: (buffer: Uint8Array) => void } | null;
}

/**
 * Constructs an unconnected socket with `onread` and finds the fields it got
 * (kBuffer, kBufferCb, kBufferGen in Node 20 and 24), checking each holds
 * what was passed, so a renamed or reshaped field disables the fast path
 * instead of misusing it.
 */
function findOnreadFields(): OnreadFields | undefined {
  const buffer = Buffer.alloc(1);
  const callback = (): boolean => true;
  const probe = new Socket({ onread: { buffer, callback } });
  try {
    const own = probe as unknown as Record<symbol, unknown>;
    const named = new Map(Object.getOwnPropertySymbols(probe).map((s) => [s.description, s]));
    const fields = { buffer: named.get("kBuffer"), callback: named.get("kBufferCb"), generator: named.get("kBufferGen") };
    if (fields.buffer === undefined || fields.callback === undefined || fields.generator === undefined) return undefined;
    if (own[fields.buffer] !== buffer || own[fields.callback] !== callback || own[fields.generator] !== null) return undefined;
    return { buffer: fields.buffer, callback: fields.callback, generator: fields.generator };
  } finally {
    probe.destroy();
  }
}

/** The error Node's own write would have failed the socket with. */
function sendError(errno: number): NodeJS.ErrnoException {
  const code = getSystemErrorName(-errno);
  return Object.assign(new Error(`write ${code}`), { errno: -errno, code, syscall: "write" });
}
