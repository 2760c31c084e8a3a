// Drives test/helpers/peer.mjs inside a namespace: a TCP client or server in
// its own process, so a host can vanish under it, controlled by JSON commands
// and observed through its timestamped events.

import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { ChildLog } from "./child-log.js";
import type { EventLog } from "./event-log.js";
import type { Namespace, Teardown } from "./netns.js";

const PEER_SCRIPT = fileURLToPath(new URL("./peer.mjs", import.meta.url));

/** One line reported by the peer: `ev` is the event, `t` its Date.now(). */
export interface PeerEvent {
  readonly ev: string;
  readonly t: number;
  readonly conn?: string;
  readonly code?: string | null;
  readonly port?: number;
  readonly bytes?: number;
  readonly total?: number;
  readonly sha256?: string;
  readonly [key: string]: unknown;
}

/** A peer program running in a namespace. */
export class PeerProcess {
  readonly events: EventLog<PeerEvent>;
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #output: ChildLog<PeerEvent>;
  #connects = 0;

  private constructor(child: ChildProcessWithoutNullStreams, label: string) {
    this.#child = child;
    this.#output = new ChildLog<PeerEvent>(child, `peer ${label}`);
    this.events = this.#output.entries;
  }

  /** Starts a peer in `ns` and registers its stop with `teardown` before waiting for it. */
  static async start(ns: Namespace, teardown: Teardown): Promise<PeerProcess> {
    const child = spawn("ip", ["netns", "exec", ns.name, process.execPath, PEER_SCRIPT], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    const peer = new PeerProcess(child, ns.role);
    teardown.defer(() => peer.stop());
    await peer.events.waitFor((e) => e.ev === "ready", 10_000, `peer in ${ns.name} to start`);
    return peer;
  }

  /** Sends one command line. */
  command(cmd: Record<string, unknown>): void {
    this.#child.stdin.write(`${JSON.stringify(cmd)}\n`);
  }

  /** Waits for an event matching `pred`; see EventLog.waitFor. */
  waitFor(pred: (e: PeerEvent) => boolean, timeoutMs: number, what: string, from = 0): Promise<PeerEvent> {
    return this.events.waitFor(pred, timeoutMs, what, from);
  }

  /** Listens on host:port (0 = any) and resolves with the bound port; with `tls` (PEM files) as a TLS server. */
  async listen(host: string, port = 0, tls?: { cert: string; key: string }): Promise<number> {
    const from = this.events.items.length;
    this.command({ cmd: "listen", host, port, ...(tls ? { tls } : {}) });
    const e = await this.waitFor(
      (x) => x.ev === "listening" || x.ev === "server-error",
      5_000,
      `listen on ${host}:${port}`,
      from,
    );
    if (e.ev !== "listening" || e.port === undefined) throw new Error(`listen failed: ${JSON.stringify(e)}`);
    return e.port;
  }

  /** Opens a connection to host:port and returns its handle at once (not waiting for `connected`). */
  connect(host: string, port: number, tls?: { ca: string; servername: string }): PeerConnection {
    const id = `c${++this.#connects}`;
    this.command({ cmd: "connect", conn: id, host, port, ...(tls ? { tls } : {}) });
    return new PeerConnection(this, id);
  }

  /** Resolves with the n-th accepted connection (1-based). */
  async accepted(n: number, timeoutMs: number): Promise<PeerConnection> {
    const id = `a${n}`;
    await this.waitFor((e) => e.ev === "accepted" && e.conn === id, timeoutMs, `accepted connection ${id}`);
    return new PeerConnection(this, id);
  }

  /** Closes stdin (the peer exits by itself), then SIGKILLs it if it lingers. */
  stop(): Promise<void> {
    return this.#output.stop(() => this.#child.stdin.end(), 2_000);
  }
}

/** One connection of a peer: commands aimed at it and waits on its events. */
export class PeerConnection {
  readonly peer: PeerProcess;
  readonly id: string;

  constructor(peer: PeerProcess, id: string) {
    this.peer = peer;
    this.id = id;
  }

  /** Sends `bytes` random bytes (or `text`). */
  send(data: number | string): void {
    this.peer.command(
      typeof data === "number"
        ? { cmd: "send", conn: this.id, bytes: data }
        : { cmd: "send", conn: this.id, text: data },
    );
  }

  /** Writes without pause until the connection fails (keeps unacknowledged data in flight). */
  stream(chunk = 65_536): void {
    this.peer.command({ cmd: "stream", conn: this.id, chunk });
  }

  /** Sends FIN after everything queued. */
  end(): void {
    this.peer.command({ cmd: "end", conn: this.id });
  }

  /** Stops reading. */
  pause(): void {
    this.peer.command({ cmd: "pause", conn: this.id });
  }

  /** Resumes reading. */
  resume(): void {
    this.peer.command({ cmd: "resume", conn: this.id });
  }

  /** Closes gracefully where possible. */
  destroy(): void {
    this.peer.command({ cmd: "destroy", conn: this.id });
  }

  /** Closes with RST. */
  reset(): void {
    this.peer.command({ cmd: "reset", conn: this.id });
  }

  /** Waits for this connection's event named `ev` that also matches `pred`. */
  waitFor(ev: string, timeoutMs: number, pred: (e: PeerEvent) => boolean = () => true, from = 0): Promise<PeerEvent> {
    return this.peer.waitFor((e) => e.conn === this.id && e.ev === ev && pred(e), timeoutMs, `${this.id} ${ev}`, from);
  }

  /** Waits until this connection has received at least `total` bytes. */
  waitForBytes(total: number, timeoutMs: number): Promise<PeerEvent> {
    return this.waitFor("data", timeoutMs, (e) => (e.total ?? 0) >= total);
  }

  /** Waits for the end of this connection by error or close, whichever is reported first. */
  waitForFailure(timeoutMs: number, from = 0): Promise<PeerEvent> {
    return this.peer.waitFor(
      (e) => e.conn === this.id && (e.ev === "error" || e.ev === "close"),
      timeoutMs,
      `${this.id} error or close`,
      from,
    );
  }

  /** Resolves if none of this connection's events named in `evs` arrive within `ms`. */
  expectNone(evs: readonly string[], ms: number, from = 0): Promise<void> {
    return this.peer.events.expectNone(
      (e) => e.conn === this.id && evs.includes(e.ev),
      ms,
      `${this.id} ${evs.join("/")}`,
      from,
    );
  }

  /** Bytes received so far. */
  received(): number {
    let total = 0;
    for (const e of this.peer.events.items) {
      if (e.conn === this.id && (e.ev === "data" || e.ev === "end")) total = e.total ?? total;
    }
    return total;
  }
}
