// Runs the built CLI (dist/cli.js) as a real process, inside a namespace or in
// the test's own (test/helpers/local-proxy.ts), and records its pino log lines
// as parsed JSON.

import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ChildLog } from "./child-log.js";
import type { EventLog } from "./event-log.js";
import type { Namespace, Teardown } from "./netns.js";

/** The built CLI; tests run it as users do, so `npm run build` must have run. */
export const CLI_PATH = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));

/** One parsed log line; `level` is a string label. */
export interface ProxyLogLine {
  readonly level: string;
  readonly msg: string;
  readonly [key: string]: unknown;
}

/** The fields of a `session closed` line the tests read. */
export interface SessionClosed extends ProxyLogLine {
  readonly sessionId: string;
  readonly reason: string;
  readonly side?: string;
  readonly errno?: string;
  readonly bytesFromClient: number;
  readonly bytesFromUpstream: number;
  readonly durationMs: number;
}

/** A running proxy and what it logged. */
export class ProxyProcess {
  readonly logs: EventLog<ProxyLogLine>;
  /** Address and port from the `listening` line. */
  address = "";
  port = 0;
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #output: ChildLog<ProxyLogLine>;

  private constructor(child: ChildProcessWithoutNullStreams) {
    this.#child = child;
    this.#output = new ChildLog<ProxyLogLine>(child, "proxy");
    this.logs = this.#output.entries;
  }

  /**
   * Starts `node dist/cli.js ...args` in `ns`, registers its stop with
   * `teardown`, and resolves once it logged `listening`.
   */
  static async start(ns: Namespace | undefined, teardown: Teardown, args: readonly string[]): Promise<ProxyProcess> {
    if (!existsSync(CLI_PATH))
      throw new Error(`${CLI_PATH} does not exist: run \`npm run build\` before the netns tests`);
    // Without a namespace the proxy runs in the test's own network namespace (loopback tests).
    // KP_TEST_WORKERS runs every such proxy with that many workers (`npm run test:workers1`);
    // by default they run with the proxy's own default, auto.
    const workers = process.env.KP_TEST_WORKERS === undefined ? [] : ["--workers", process.env.KP_TEST_WORKERS];
    const cli = [process.execPath, CLI_PATH, ...args, ...workers];
    const argv = ns ? ["ip", "netns", "exec", ns.name, ...cli] : cli;
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    const proxy = new ProxyProcess(child);
    teardown.defer(() => proxy.stop());
    const line = await proxy.waitForLog((l) => l.msg === "listening", 30_000, "the listening log line");
    proxy.address = String(line.address);
    proxy.port = Number(line.port);
    return proxy;
  }

  /** Waits for a log line matching `pred`; see EventLog.waitFor. */
  waitForLog(pred: (l: ProxyLogLine) => boolean, timeoutMs: number, what: string, from = 0): Promise<ProxyLogLine> {
    return this.logs.waitFor(pred, timeoutMs, what, from);
  }

  /** Waits for the `admin listening` line and returns the admin server's port. */
  async adminPort(): Promise<number> {
    return Number((await this.waitForLog((l) => l.msg === "admin listening", 10_000, "the admin listening line")).port);
  }

  /** Waits for the next `session closed` line (from log index `from` on). */
  async waitForSessionClosed(timeoutMs: number, from = 0): Promise<SessionClosed> {
    return (await this.waitForLog(
      (l) => l.msg === "session closed",
      timeoutMs,
      "a session closed line",
      from,
    )) as SessionClosed;
  }

  /** The process id (of `ip netns exec`'s successor: exec replaces it, so this is the proxy). */
  get pid(): number {
    return this.#child.pid ?? 0;
  }

  /** Everything the proxy wrote to stderr so far (a stack trace there is a crash or an unhandled error). */
  get stderr(): string {
    return this.#output.stderr;
  }

  /** Stdout lines that were not JSON log lines. */
  get nonJsonStdout(): string {
    return this.#output.nonJsonStdout;
  }

  /** Sends a signal to the proxy. */
  signal(signal: NodeJS.Signals): void {
    this.#child.kill(signal);
  }

  /** Resolves with the exit code once the proxy has exited. */
  async exitCode(): Promise<number | null> {
    await this.#output.exited;
    return this.#child.exitCode;
  }

  /** SIGTERM, then SIGKILL if it has not exited within 3 s. */
  stop(): Promise<void> {
    return this.#output.stop(() => this.#child.kill("SIGTERM"), 3_000);
  }
}
