import type { Logger } from "pino";
import { ConfigError, formatProblem } from "../config/errors.js";
import type { Config } from "../config/schema.js";
import type { KeepaliveProxy } from "../main.js";

/**
 * SIGHUP: re-read the config through `load` and apply it. The one function the
 * SIGHUP path goes through, so that it can become a single call to the
 * proxy's serialised reload. Never rejects: an invalid config, a loader that
 * throws anything else (a bug, not the operator's mistake: logged at error),
 * or a reload that fails, each leaves the running config in force with one
 * error line, and is counted as a failed reload.
 */
export async function reloadConfig(proxy: KeepaliveProxy, logger: Logger, load: () => Config): Promise<void> {
  const started = performance.now();
  let next: Config;
  try {
    next = load();
  } catch (error) {
    proxy.reloadRefused();
    if (error instanceof ConfigError) {
      logger.error({ problems: error.problems.map(formatProblem) }, "reload refused: invalid config; the running config stays in force");
    } else {
      logger.error({ err: errorText(error) }, "reload failed reading the config; the running config stays in force");
    }
    return;
  }
  try {
    const outcome = await proxy.reload(next);
    logger.level = next.log.level;
    logger.info({ ...outcome, durationMs: Math.round(performance.now() - started), liveSessions: proxy.sessionTotal }, "config reloaded");
  } catch (error) {
    logger.error({ err: errorText(error) }, "reload refused; the running config stays in force");
  }
}

/** An error's message, or whatever was thrown as text, for a log field. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
