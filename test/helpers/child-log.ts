// What a child process that reports in JSON lines on stdout (the proxy CLI,
// the peer program) said, recorded in an EventLog, with its stderr kept for
// failure messages, and its stop bounded by a SIGKILL.

import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";
import { EventLog, tail } from "./event-log.js";

/** A child's stdout lines as parsed JSON, plus the rest of its output for failure messages. */
export class ChildLog<T> {
  /** One entry per JSON line; ended (waits fail naming stderr) once the process has exited. */
  readonly entries: EventLog<T>;
  /** Resolves when the process has exited and its output is closed. */
  readonly exited: Promise<void>;
  readonly #child: ChildProcessWithoutNullStreams;
  #stderr = "";
  #raw = "";

  /** Starts recording `child`'s output; `label` names it in failure messages (`proxy`, `peer client`). */
  constructor(child: ChildProcessWithoutNullStreams, label: string) {
    this.#child = child;
    this.entries = new EventLog<T>(
      () => `${label} stderr: ${this.#stderr.slice(-2000)}\nnon-JSON stdout: ${this.#raw.slice(-1000)}\nlast lines:\n${tail(this.entries.items)}`,
    );
    child.stderr.setEncoding("utf8").on("data", (s: string) => {
      this.#stderr += s;
    });
    createInterface({ input: child.stdout }).on("line", (line) => {
      try {
        this.entries.push(JSON.parse(line) as T);
      } catch {
        this.#raw += `${line}\n`;
      }
    });
    this.exited = new Promise((resolve) => {
      child.on("close", (code, signal) => {
        this.entries.end(new Error(`${label} exited (${code ?? signal}); stderr: ${this.#stderr.slice(-2000)}`));
        resolve();
      });
    });
  }

  /** Everything the process wrote to stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** Stdout lines that were not JSON. */
  get nonJsonStdout(): string {
    return this.#raw;
  }

  /** Unless it has exited already: `ask` it to stop (a signal, closing stdin), then SIGKILL it if it is still there after `graceMs`. */
  async stop(ask: () => void, graceMs: number): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    ask();
    const timer = setTimeout(() => this.#child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
