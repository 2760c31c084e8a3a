import { createRequire } from "node:module";
import pino, { type DestinationStream, type Logger } from "pino";
import type pretty from "pino-pretty";

// pino-pretty is loaded only for --log-format pretty: it costs ~8 MB of RSS that a JSON-logging proxy never needs.
const require = createRequire(import.meta.url);

export interface LoggerOptions {
  readonly level: string;
  readonly format: "json" | "pretty";
  /** Where lines go; stdout by default. Tests pass an in-memory stream. */
  readonly destination?: DestinationStream;
}

/**
 * The root logger. JSON lines with string level labels and ISO times, the form
 * log shippers (Loki, Elasticsearch, CloudWatch) index without a parser.
 */
export function createLogger(options: LoggerOptions): Logger {
  const destination =
    options.destination ??
    (options.format === "pretty"
      ? (require("pino-pretty") as typeof pretty)({ colorize: process.stdout.isTTY === true, sync: true, singleLine: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname" })
      : pino.destination({ dest: 1, sync: true }));
  return pino(
    {
      level: options.level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
