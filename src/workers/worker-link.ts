import { type ChildProcess, fork } from "node:child_process";
import { MALLOC_ARENAS } from "../net/malloc-tuning.js";
import type { FromWorker, ToWorker } from "./protocol.js";

type Reply<T extends FromWorker["t"]> = Extract<FromWorker, { t: T }>;

/**
 * V8's young generation for a worker, in MiB per semi-space. Node's default
 * lets it grow to 16 MiB (32 MiB of new space) as soon as a burst of accepts
 * keeps objects alive, and a worker keeps that memory for good: opening 9,900
 * idle sessions across two workers cost 10.8 KiB of RSS per session with the
 * default and 6.0 KiB with 2 MiB (1 MiB gave no less). Sessions live far longer
 * than a scavenge, so a larger young generation buys little; see README,
 * "Memory", for the CPU side of the trade.
 */
export const WORKER_SEMI_SPACE_MIB = 2;

/**
 * The Node flags a worker is started with: the supervisor's own, plus the
 * young-generation cap unless the operator set one (on the command line or in
 * NODE_OPTIONS), which then wins.
 */
export function workerExecArgv(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const chosen = [...execArgv, ...(nodeOptions ?? "").split(/\s+/)].some((flag) => /^--max[-_]semi[-_]space[-_]size\b/.test(flag));
  return chosen ? [...execArgv] : [...execArgv, `--max-semi-space-size=${WORKER_SEMI_SPACE_MIB}`];
}

/**
 * One worker process and the IPC channel to it: fire-and-forget messages,
 * and requests whose answer carries the request's id. An answer that does
 * not come within its timeout resolves as undefined, so a hung or dead
 * worker never hangs the supervisor.
 */
export class WorkerLink {
  readonly child: ChildProcess;
  private nextId = 0;
  private readonly pending = new Map<number, (message: FromWorker | undefined) => void>();

  constructor(
    readonly slot: number,
    script: string,
    onMessage: (link: WorkerLink, message: FromWorker) => void,
  ) {
    this.child = fork(script, [], {
      execArgv: workerExecArgv(process.execArgv, process.env.NODE_OPTIONS),
      // Logs go straight to the supervisor's stdout and stderr: no relay.
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      serialization: "advanced",
      // One malloc arena from the first allocation on (see MALLOC_ARENAS), unless the operator chose.
      env: { MALLOC_ARENA_MAX: String(MALLOC_ARENAS), ...process.env, KEEPALIVE_PROXY_WORKER: String(slot) },
    });
    this.child.on("message", (message: FromWorker) => {
      const id = "id" in message ? message.id : "revokeId" in message ? message.revokeId : undefined;
      const waiter = id === undefined ? undefined : this.pending.get(id);
      if (waiter !== undefined && id !== undefined && (message.t !== "slots.return" || "revokeId" in message)) {
        this.pending.delete(id);
        waiter(message);
        return;
      }
      onMessage(this, message);
    });
    this.child.on("exit", () => {
      for (const waiter of this.pending.values()) waiter(undefined);
      this.pending.clear();
    });
    // A worker that died between our check and the send: its exit is handled elsewhere.
    this.child.on("error", () => {});
  }

  /** Whether the process is still running. */
  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  send(message: ToWorker): void {
    if (this.alive && this.child.connected) this.child.send(message);
  }

  /** Sends a request made with a fresh id, and resolves with its answer (undefined after timeoutMs or at exit). */
  request<T extends FromWorker["t"]>(make: (id: number) => ToWorker, _answer: T, timeoutMs: number): Promise<Reply<T> | undefined> {
    const id = ++this.nextId;
    return new Promise((resolve) => {
      if (!this.alive) {
        resolve(undefined);
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(undefined);
      }, timeoutMs);
      this.pending.set(id, (message) => {
        clearTimeout(timer);
        resolve(message as Reply<T> | undefined);
      });
      this.send(make(id));
    });
  }
}
