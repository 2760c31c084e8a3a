import { type AddressInfo, createServer, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { describe, expect, it, onTestFinished } from "vitest";
import { DirectForwarding } from "../../src/net/direct-forwarding.js";
import { loadLibc } from "../../src/net/libc.js";
import { waitUntil } from "../helpers/in-process-proxy.js";
import { connectClient, startServer } from "../helpers/tcp.js";

// The proxy's fast path: reads into one shared buffer, writes with send(2).
// These check the pieces on real loopback sockets; the forwarding,
// backpressure, half-close and idle tests check them inside sessions.

/** A connected loopback pair: ours (the proxy's side) and theirs (the peer). */
async function socketPair(): Promise<{ ours: Socket; theirs: Socket }> {
  const server = await startServer();
  const ours = await connectClient(server.port);
  const theirs = await server.accepted();
  return { ours, theirs };
}

function forwarding(): DirectForwarding {
  const direct = DirectForwarding.create(loadLibc());
  // Undefined would mean this Node lacks the onread fields: sessions would
  // silently fall back to streams, at about twice the CPU per byte.
  expect(direct, `the shared read buffer on Node ${process.version}`).toBeDefined();
  return direct as DirectForwarding;
}

describe("direct forwarding", () => {
  it("sends straight to the kernel, and says how much it took when the send buffer fills", async () => {
    const direct = forwarding();
    const { ours, theirs } = await socketPair();
    const data = Buffer.alloc(256 * 1024, 3);
    expect(direct.send(ours, data, 10)).toBe(10);
    // The peer does not read: the kernel takes less and less, then nothing.
    theirs.pause();
    let taken = 0;
    let last = data.length;
    for (let i = 0; i < 1000 && last > 0; i++) {
      last = direct.send(ours, data, data.length);
      expect(last).toBeGreaterThanOrEqual(0);
      taken += last;
    }
    expect(last).toBe(0);
    expect(ours.destroyed).toBe(false);
    let received = 0;
    theirs.on("data", (chunk: Buffer) => {
      received += chunk.length;
    });
    theirs.resume();
    await waitUntil(() => received === 10 + taken || undefined, 5_000, "every byte the kernel took");
  });

  it("fails the socket with the errno Node's own write would have, once the peer has reset", async () => {
    const direct = forwarding();
    // Accepted paused, never read: the reset is met by the send, not by a read.
    const server = createServer({ pauseOnConnect: true });
    onTestFinished(() => void server.close());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const accepted = new Promise<Socket>((resolve) => server.once("connection", resolve));
    const theirs = await connectClient((server.address() as AddressInfo).port);
    const ours = await accepted;
    const errors: NodeJS.ErrnoException[] = [];
    ours.on("error", (error: NodeJS.ErrnoException) => errors.push(error));
    theirs.resetAndDestroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(direct.send(ours, Buffer.from("late"), 4)).toBe(-1);
    await waitUntil(() => errors[0], 2_000, "the socket's error");
    expect(["ECONNRESET", "EPIPE"]).toContain(errors[0]?.code);
    expect(errors[0]?.syscall).toBe("write");
    expect(ours.destroyed).toBe(true);
  });

  it("hands each read to the callback in the shared buffer, counts it in bytesRead, and pauses on false", async () => {
    const direct = forwarding();
    const { ours, theirs } = await socketPair();
    expect(direct.canAdopt(ours)).toBe(true);
    const reads: string[] = [];
    let shared: Buffer | undefined;
    let keepReading = true;
    direct.adoptReads(ours, function (this: Socket, nread, buffer) {
      expect(this).toBe(ours);
      shared ??= buffer;
      expect(buffer).toBe(shared); // one buffer for every read
      reads.push(buffer.toString("latin1", 0, nread));
      return keepReading;
    });
    ours.resume();
    theirs.write("first");
    await waitUntil(() => reads.join("") === "first" || undefined, 2_000, "the first read");
    keepReading = false;
    theirs.write("second");
    await waitUntil(() => reads.join("") === "firstsecond" || undefined, 2_000, "the second read");
    theirs.write("third"); // not read while paused
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(reads.join("")).toBe("firstsecond");
    keepReading = true;
    ours.resume();
    await waitUntil(() => reads.join("") === "firstsecondthird" || undefined, 2_000, "the read after resume");
    expect(ours.bytesRead).toBe("firstsecondthird".length);
    let ended = false;
    ours.on("end", () => {
      ended = true;
    });
    theirs.end();
    await waitUntil(() => ended || undefined, 2_000, "the end of file, still as 'end'");
  });

  it("adopts only plain TCP sockets", async () => {
    const direct = forwarding();
    const { ours } = await socketPair();
    const tls = tlsConnect({ socket: ours, rejectUnauthorized: false });
    tls.on("error", () => {});
    expect(direct.canAdopt(tls)).toBe(false);
    tls.destroy();
    expect(direct.canAdopt(ours)).toBe(false); // destroyed with its TLS wrapper
  });
});
