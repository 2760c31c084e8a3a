import koffi from "koffi";

/**
 * The few libc calls the proxy needs that Node does not expose: setsockopt and
 * getsockopt on a socket's file descriptor (Node sets neither TCP_KEEPINTVL nor
 * TCP_KEEPCNT on Node 20, and TCP_USER_TIMEOUT on no version), plus socket and
 * close for the startup check on a throwaway socket, and getrlimit/setrlimit
 * for the descriptor budget (Node has no binding for either).
 *
 * koffi is used rather than a native addon: it ships prebuilt binaries for
 * every Node ABI, so the image needs no compiler and one build serves Node 20
 * and 24 alike (see README, "Why koffi").
 */
export interface Libc {
  /** Sets an int option. Returns 0 or the errno the kernel answered with. */
  setInt(fd: number, level: number, name: number, value: number): number;
  /** Sets SO_LINGER: on, with this many seconds (0: close() sends a reset). Returns 0 or the errno. */
  setLinger(fd: number, seconds: number): number;
  /** Reads an int option, or the errno. */
  getInt(fd: number, level: number, name: number): { value: number } | { errno: number };
  /** Reads a struct option (TCP_INFO) into a fresh buffer; undefined on error. */
  getBytes(fd: number, level: number, name: number, size: number): Buffer | undefined;
  /** Opens an unconnected TCP socket of the given family, or returns the errno as a negative number. */
  openTcpSocket(family: 4 | 6): number;
  closeFd(fd: number): void;
  /**
   * Opens a TCP socket with SO_REUSEADDR and SO_REUSEPORT, binds it to the
   * address in `sockaddr` (a struct sockaddr_in or sockaddr_in6) and, when
   * `backlog` is given, listens. Returns the fd, or the errno as a negative
   * number (the socket is closed again on failure).
   */
  openReusePortSocket(family: 4 | 6, sockaddr: Buffer, backlog: number | undefined): number;
  /** The local port a socket is bound to, or the errno as a negative number. */
  localPort(fd: number): number;
  /**
   * send(2) without blocking and without SIGPIPE: how many of the first
   * `length` bytes of `data` the kernel took now, or the errno as a negative
   * number (EAGAIN when its send buffer is full).
   */
  send(fd: number, data: Buffer, length: number): number;
  /** glibc's mallopt; false where it is missing (musl) or refuses the value. */
  mallopt(param: number, value: number): boolean;
  /** getrlimit: a resource's soft and hard limit (RLIM_INFINITY as Infinity), or the errno. */
  getRlimit(resource: number): ResourceLimit | { errno: number };
  /** setrlimit: 0, or the errno the kernel answered with (EPERM above the hard limit). */
  setRlimit(resource: number, limit: ResourceLimit): number;
}

/** A resource limit pair; Infinity stands for RLIM_INFINITY. */
export interface ResourceLimit {
  readonly soft: number;
  readonly hard: number;
}

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOL_SOCKET = 1;
const SO_LINGER = 13;
const SO_REUSEADDR = 2;
const SO_REUSEPORT = 15;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;

/** Loads libc through koffi. Throws when not on Linux with glibc or musl. */
export function loadLibc(): Libc {
  const lib = loadFirst(["libc.so.6", "libc.so", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1"]);
  // The value goes through a preallocated buffer: koffi marshals a Buffer as a
  // bare pointer, about 2.5x faster than converting a JS array per call.
  const setsockopt = lib.func("int setsockopt(int, int, int, const void *, uint32_t)");
  const intIn = Buffer.alloc(4);
  const lingerIn = Buffer.alloc(8); // struct linger { int l_onoff; int l_linger; }
  const getsockoptInt = lib.func("int getsockopt(int, int, int, _Out_ int *, _Inout_ uint32_t *)");
  // Both pointers as bare buffers (a TCP_INFO read runs behind every end of file): half the cost of an _Inout_ array.
  const getsockoptBuf = lib.func("int getsockopt(int, int, int, void *, void *)");
  const lenInOut = Buffer.alloc(4);
  const socket = lib.func("int socket(int, int, int)");
  const close = lib.func("int close(int)");
  const bind = lib.func("int bind(int, const void *, uint32_t)");
  const listen = lib.func("int listen(int, int)");
  const getsockname = lib.func("int getsockname(int, _Out_ uint8_t *, _Inout_ uint32_t *)");
  const send = lib.func("long send(int, const void *, size_t, int)");
  const mallopt = optionalFunc(lib, "int mallopt(int, int)");
  // rlim_t is unsigned long on glibc and musl alike (32 or 64 bits); an
  // anonymous struct, because koffi keeps named types for the process and
  // loadLibc may run more than once.
  const rlimit = koffi.struct({ rlim_cur: "unsigned long", rlim_max: "unsigned long" });
  const getrlimit = lib.func("getrlimit", "int", ["int", koffi.out(koffi.pointer(rlimit))]);
  const setrlimit = lib.func("setrlimit", "int", ["int", koffi.pointer(rlimit)]);
  const rlimInfinity = (1n << BigInt(8 * koffi.sizeof("unsigned long"))) - 1n;
  // One reusable out-slot each: these calls are synchronous, so no two can interleave.
  const intOut = [0];
  const lenOut = [0];
  return {
    setInt(fd, level, name, value) {
      intIn.writeInt32LE(value, 0);
      return setsockopt(fd, level, name, intIn, 4) === 0 ? 0 : koffi.errno();
    },
    setLinger(fd, seconds) {
      lingerIn.writeInt32LE(1, 0);
      lingerIn.writeInt32LE(seconds, 4);
      return setsockopt(fd, SOL_SOCKET, SO_LINGER, lingerIn, 8) === 0 ? 0 : koffi.errno();
    },
    getInt(fd, level, name) {
      lenOut[0] = 4;
      if (getsockoptInt(fd, level, name, intOut, lenOut) !== 0) return { errno: koffi.errno() };
      return { value: intOut[0] ?? 0 };
    },
    getBytes(fd, level, name, size) {
      const buf = Buffer.alloc(size);
      lenInOut.writeUInt32LE(size, 0);
      if (getsockoptBuf(fd, level, name, buf, lenInOut) !== 0) return undefined;
      return buf.subarray(0, lenInOut.readUInt32LE(0));
    },
    openTcpSocket(family) {
      const fd = socket(family === 6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0) as number;
      return fd >= 0 ? fd : -koffi.errno();
    },
    closeFd(fd) {
      close(fd);
    },
    openReusePortSocket(family, sockaddr, backlog) {
      const fd = socket(family === 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number;
      if (fd < 0) return -koffi.errno();
      const fail = (): number => {
        const errno = koffi.errno();
        close(fd);
        return -errno;
      };
      intIn.writeInt32LE(1, 0);
      if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, intIn, 4) !== 0) return fail();
      if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, intIn, 4) !== 0) return fail();
      if (family === 6) {
        // [::] takes IPv4 too, as Node's own listen does, whatever net.ipv6.bindv6only says.
        intIn.writeInt32LE(0, 0);
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, intIn, 4) !== 0) return fail();
      }
      if (bind(fd, sockaddr, sockaddr.length) !== 0) return fail();
      if (backlog !== undefined && listen(fd, backlog) !== 0) return fail();
      return fd;
    },
    localPort(fd) {
      const buf = Buffer.alloc(28);
      lenOut[0] = 28;
      if (getsockname(fd, buf, lenOut) !== 0) return -koffi.errno();
      return buf.readUInt16BE(2);
    },
    send(fd, data, length) {
      const sent = send(fd, data, length, MSG_DONTWAIT | MSG_NOSIGNAL) as number;
      return sent >= 0 ? sent : -koffi.errno();
    },
    mallopt(param, value) {
      return mallopt !== undefined && mallopt(param, value) === 1;
    },
    getRlimit(resource) {
      const out: { rlim_cur?: number | bigint; rlim_max?: number | bigint } = {};
      if (getrlimit(resource, out) !== 0) return { errno: koffi.errno() };
      return { soft: fromRlim(out.rlim_cur), hard: fromRlim(out.rlim_max) };
    },
    setRlimit(resource, limit) {
      const toRlim = (n: number): number | bigint => (Number.isFinite(n) ? n : rlimInfinity);
      return setrlimit(resource, { rlim_cur: toRlim(limit.soft), rlim_max: toRlim(limit.hard) }) === 0 ? 0 : koffi.errno();
    },
  };
}

/** koffi hands back a BigInt only for values past 2^53: in practice RLIM_INFINITY. */
function fromRlim(value: number | bigint | undefined): number {
  return typeof value === "bigint" ? Number.POSITIVE_INFINITY : (value ?? 0);
}

function optionalFunc(lib: ReturnType<typeof koffi.load>, definition: string): ((...args: number[]) => number) | undefined {
  try {
    return lib.func(definition) as (...args: number[]) => number;
  } catch {
    return undefined;
  }
}

function loadFirst(names: readonly string[]): ReturnType<typeof koffi.load> {
  let lastError: unknown;
  for (const name of names) {
    try {
      return koffi.load(name);
    } catch (error) {
      lastError = error;
    }
  }
  throw new Error(`cannot load libc (tried ${names.join(", ")})`, { cause: lastError });
}
