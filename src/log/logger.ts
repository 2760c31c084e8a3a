import { createRequire } from "node:module";
import pino, { type DestinationStream, type Logger } from "pino";
import type pretty from "pino-pretty";
import { LineBatcher } from "./line-batcher.js";

// pino-pretty is loaded only for --log-format pretty: it costs ~8 MB of RSS that a JSON-logging proxy never needs.
const require = createRequire(import.meta.url);

export interface LoggerOptions {
  readonly level: string;
  readonly format: "json" | "pretty";
  /** Where lines go; stdout by default. Tests pass an in-memory stream. */
  readonly destination?: DestinationStream;
  /** The `worker` field of every line: a worker's number, or `supervisor`; 1 for a single-process proxy. */
  readonly worker?: number | "supervisor";
}

/**
 * The largest write(2) of log lines. Worker processes share one stdout; a
 * write to a pipe of at most PIPE_BUF (4096) bytes is atomic, and sonic-boom
 * cuts its buffer only between lines, so lines of different workers never
 * interleave mid-line.
 */
const MAX_LOG_WRITE = 4096;

/**
 * Lines are held until this many bytes are buffered (or LOG_FLUSH_MS passes)
 * before a write(2) is started. Each asynchronous write is a round trip
 * through libuv's thread pool (a futex wake-up of a pool thread, then an
 * eventfd wake-up of the loop), which cost more CPU than the session it
 * reports when made for one or two lines; batched, a busy proxy makes one
 * write per dozen session lines. Must stay below MAX_LOG_WRITE.
 */
const LOG_BATCH_BYTES = 3072;

/** The longest a line waits in the buffer on a quiet proxy, in milliseconds. */
const LOG_FLUSH_MS = 100;

/**
 * The root logger. JSON lines with string level labels and ISO times, the form
 * log shippers (Loki, Elasticsearch, CloudWatch) index without a parser.
 */
export function createLogger(options: LoggerOptions): Logger {
  const destination =
    options.destination ??
    (options.format === "pretty"
      ? (require("pino-pretty") as typeof pretty)({ colorize: process.stdout.isTTY === true, sync: true, singleLine: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname" })
      : // Asynchronous and batched; the CLI flushes it (flushLogger) before the process exits, so no line is lost.
        batchedStdout());
  return pino(
    {
      level: options.level,
      base: { pid: process.pid, worker: options.worker ?? 1 },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

/**
 * Standard output, written asynchronously in batches of whole lines (see
 * LineBatcher): sonic-boom does the writes (partial writes, EAGAIN, the
 * synchronous flush at exit), and each batch it gets is at most MAX_LOG_WRITE
 * bytes. What is still held at exit is written synchronously then.
 */
function batchedStdout(): LineBatcher {
  const sonic = pino.destination({ dest: 1, sync: false, maxWrite: MAX_LOG_WRITE, minLength: 0 });
  const batcher = new LineBatcher(sonic, { batchBytes: LOG_BATCH_BYTES, maxBytes: MAX_LOG_WRITE, flushMs: LOG_FLUSH_MS });
  process.once("exit", () => {
    try {
      batcher.flushSync();
    } catch {
      // stdout is gone (closed pipe): nothing can be written any more
    }
  });
  return batcher;
}

/** Writes out whatever the logger still buffers; call before process.exit. */
export function flushLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    try {
      logger.flush(() => resolve());
    } catch {
      resolve(); // a destination without flush (pretty, tests) has nothing buffered
    }
  });
}
