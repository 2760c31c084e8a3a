import { createHash, randomBytes } from "node:crypto";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { onTestFinished } from "vitest";

/** What a test peer saw on one socket. */
export interface Observed {
  readonly socket: Socket;
  bytes: number;
  readonly hash: ReturnType<typeof createHash>;
  ended: boolean;
  errorCode: string | undefined;
  closed: boolean;
  closedAt: number;
}

/** Records what arrives on a socket without altering it. */
export function observe(socket: Socket, { read = true } = {}): Observed {
  const o: Observed = {
    socket,
    bytes: 0,
    hash: createHash("sha256"),
    ended: false,
    errorCode: undefined,
    closed: false,
    closedAt: 0,
  };
  socket.on("data", (chunk: Buffer) => {
    o.bytes += chunk.length;
    o.hash.update(chunk);
  });
  if (!read) socket.pause();
  socket.on("end", () => {
    o.ended = true;
  });
  socket.on("error", (e: NodeJS.ErrnoException) => {
    o.errorCode = e.code;
  });
  socket.on("close", () => {
    o.closed = true;
    o.closedAt = Date.now();
  });
  return o;
}

/** A loopback server with half-open sockets whose accepted connections the test can take. */
export async function startServer(): Promise<{ server: Server; port: number; accepted: () => Promise<Socket> }> {
  const queue: Socket[] = [];
  const waiters: ((s: Socket) => void)[] = [];
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on("error", () => {}); // tests observe errors through observe(); an unobserved reset must not crash the run
    const waiter = waiters.shift();
    if (waiter) waiter(s);
    else queue.push(s);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTestFinished(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    accepted: () =>
      new Promise((resolve) => {
        const s = queue.shift();
        if (s) resolve(s);
        else waiters.push(resolve);
      }),
  };
}

/** Connects a half-open client to 127.0.0.1:port and destroys it when the test finishes. */
export async function connectClient(port: number): Promise<Socket> {
  const socket = connect({ host: "127.0.0.1", port, allowHalfOpen: true });
  onTestFinished(() => {
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return socket;
}

/** Writes `total` random bytes in chunks, respecting backpressure; resolves with their sha256. */
export async function sendRandom(socket: Socket, total: number, chunk = 64 * 1024): Promise<string> {
  const hash = createHash("sha256");
  let sent = 0;
  while (sent < total) {
    const piece = randomBytes(Math.min(chunk, total - sent));
    hash.update(piece);
    sent += piece.length;
    if (!socket.write(piece)) await new Promise((resolve) => socket.once("drain", resolve));
  }
  return hash.digest("hex");
}
