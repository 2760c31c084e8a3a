// Runs the built CLI (dist/cli.js) as a child process in this network
// namespace, on loopback, for tests of what only a real process shows
// (signals, exit). Its pino lines are recorded as parsed JSON.

import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { onTestFinished } from "vitest";
import { EventLog, tail } from "./event-log.js";
import { CLI_PATH, type ProxyLogLine } from "./proxy-process.js";

/** How the process ended. */
export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Date.now() when it was seen to exit. */
  readonly t: number;
}

/** A running CLI and what it logged. */
export class CliProcess {
  readonly logs: EventLog<ProxyLogLine>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<Exit>;
  readonly #child: ChildProcessWithoutNullStreams;
  #stderr = "";

  private constructor(child: ChildProcessWithoutNullStreams) {
    this.#child = child;
    this.logs = new EventLog<ProxyLogLine>(() => `cli stderr: ${this.#stderr.slice(-2000)}\nlast log lines:\n${tail(this.logs.items)}`);
    child.stderr.setEncoding("utf8").on("data", (s: string) => {
      this.#stderr += s;
    });
    createInterface({ input: child.stdout }).on("line", (line) => {
      try {
        this.logs.push(JSON.parse(line) as ProxyLogLine);
      } catch {
        this.#stderr += `non-JSON stdout: ${line}\n`;
      }
    });
    this.exited = new Promise((resolve) => {
      child.on("close", (code, signal) => {
        this.logs.end(new Error(`the CLI exited (${code ?? signal}); stderr: ${this.#stderr.slice(-2000)}`));
        resolve({ code, signal, t: Date.now() });
      });
    });
  }

  /** Starts `node dist/cli.js ...args`, stopped when the test finishes, and waits for its first `listening` line. */
  static async start(args: readonly string[]): Promise<CliProcess> {
    if (!existsSync(CLI_PATH)) throw new Error(`${CLI_PATH} does not exist: run \`npm run build\` first`);
    const cli = new CliProcess(spawn(process.execPath, [CLI_PATH, ...args], { stdio: ["pipe", "pipe", "pipe"] }));
    onTestFinished(() => cli.stop());
    await cli.logs.waitFor((l) => l.msg === "listening", 10_000, "the listening line");
    return cli;
  }

  /** The port of the first line with this `msg` (`listening`, `admin listening`). */
  async portOf(msg: string): Promise<number> {
    const line = await this.logs.waitFor((l) => l.msg === msg, 10_000, `the "${msg}" line`);
    return Number(line.port);
  }

  /** Sends a signal. */
  kill(signal: NodeJS.Signals): void {
    this.#child.kill(signal);
  }

  /** SIGTERM, then SIGKILL if it has not exited within 5 s. */
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#child.kill("SIGTERM");
    const timer = setTimeout(() => this.#child.kill("SIGKILL"), 5_000);
    await this.exited;
    clearTimeout(timer);
  }
}
