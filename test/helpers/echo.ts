// An echo upstream and a round-trip meter: latency through the proxy as a
// client sees it, one small message at a time on one session.

import { type AddressInfo, createServer, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { onTestFinished } from "vitest";

/** A loopback server that sends back every byte it reads; closed, with its sockets, when the test finishes. */
export async function startEchoServer(): Promise<{ port: number }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {}); // a reset at teardown is expected
    socket.on("close", () => sockets.delete(socket));
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTestFinished(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as AddressInfo).port };
}

/** Round trips measured, in ms, in the order they were made. */
export interface RoundTrips {
  readonly ms: number[];
}

/**
 * Sends `size` bytes and waits for them to come back, over and over on
 * `socket` (an established session to an echo server), with `pauseMs`
 * between round trips, until `until()` is true. Resolves with every round
 * trip's duration.
 */
export async function measureRoundTrips(socket: Socket, until: () => boolean, { size = 32, pauseMs = 10 } = {}): Promise<RoundTrips> {
  const ms: number[] = [];
  while (!until()) {
    ms.push(await roundTrip(socket, size));
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
  return { ms };
}

/** Sends `size` bytes on `socket` and resolves with the ms until they have all come back. */
export function roundTrip(socket: Socket, size = 32): Promise<number> {
  const payload = Buffer.alloc(size, 0x61);
  return new Promise((resolve, reject) => {
    let received = 0;
    const started = performance.now();
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received < payload.length) return;
      cleanup();
      resolve(performance.now() - started);
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error(`the session closed after ${received} of ${payload.length} echoed bytes`));
    };
    const cleanup = (): void => {
      socket.off("data", onData);
      socket.off("close", onClose);
    };
    socket.on("data", onData);
    socket.on("close", onClose);
    socket.write(payload);
  });
}

/** The q-quantile (0..1) of `values`, nearest rank. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) throw new Error("no values");
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number;
}
