import { Writable } from "node:stream";
import pino from "pino";
import { onTestFinished } from "vitest";
import { loadConfig, type Override } from "../../src/config/load.js";
import { type KeepaliveProxy, startProxy } from "../../src/main.js";
import type { ConnectResult, SessionSummary } from "../../src/proxy/hooks.js";

/** A log line as parsed JSON. */
export type LogLine = Record<string, unknown> & { msg: string; level: string };

/** A proxy running inside the test process, with its log lines and closed sessions captured. */
export interface TestProxy {
  readonly proxy: KeepaliveProxy;
  readonly port: number;
  readonly logs: LogLine[];
  readonly closed: SessionSummary[];
  /** Every upstream connect attempt's result, in order. */
  readonly attempts: ConnectResult[];
  /** Resolves with the next closed session (or one already closed that matches). */
  nextClosed(timeoutMs?: number): Promise<SessionSummary>;
}

/**
 * Starts a proxy on 127.0.0.1:0 from the same flag overrides the CLI takes,
 * and stops it when the test finishes, even when the test fails.
 */
export async function startTestProxy(flags: Record<string, string | boolean>, document?: Record<string, unknown>): Promise<TestProxy> {
  // With a config document the listeners come from it; otherwise from --listen/--upstream flags.
  const defaults = document ? { "log-level": "debug", admin: "off" } : { listen: "127.0.0.1:0", "log-level": "debug", admin: "off" };
  const overrides: Override[] = Object.entries({ ...defaults, ...flags }).map(([flag, value]) => ({ flag, value, source: `--${flag}` }));
  const config = loadConfig({ file: undefined, overrides, ...(document ? { document } : {}) });
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n")) if (line) logs.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  const logger = pino({ level: "debug", formatters: { level: (label) => ({ level: label }) } }, sink);
  const closed: SessionSummary[] = [];
  const attempts: ConnectResult[] = [];
  let consumed = 0;
  const proxy = await startProxy(config, { logger, hooks: { sessionClosed: (s) => closed.push(s), upstreamConnected: (_l, result) => attempts.push(result) } });
  onTestFinished(async () => {
    await proxy.shutdown(0);
  });
  const port = [...proxy.listeners.values()][0]?.address()?.port ?? 0;
  return {
    proxy,
    port,
    logs,
    closed,
    attempts,
    nextClosed: (timeoutMs = 5000) =>
      waitUntil(() => (closed.length > consumed ? closed[consumed++] : undefined), timeoutMs, "a session to close"),
  };
}

/** Polls until fn returns a value, or rejects after timeoutMs naming what it waited for. */
export function waitUntil<T>(fn: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      const value = fn();
      if (value !== undefined && value !== false) resolve(value);
      else if (Date.now() > deadline) reject(new Error(`timed out after ${timeoutMs}ms waiting for ${what}`));
      else setTimeout(tick, 10);
    };
    tick();
  });
}
