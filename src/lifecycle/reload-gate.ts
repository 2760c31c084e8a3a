import type { Logger } from "pino";
import { ConfigError, formatProblem } from "../config/errors.js";
import type { Config } from "../config/schema.js";
import { StartupError } from "../errors.js";
import type { ReloadResult } from "../proxy/hooks.js";
import type { ReloadOutcome } from "./reload-outcome.js";

/** A reload that found the proxy shutting down part-way: nothing it bound stays. */
export class ReloadInterrupted extends Error {
  constructor() {
    super("shutdown began during the reload");
    this.name = "ReloadInterrupted";
  }
}

/** What a gate runs a reload against: a single-process proxy or the supervisor of several. */
export interface Reloadable {
  readonly isDraining: boolean;
  readonly sessionTotal: number;
  /** Applies `next` (throws when it cannot: the running config stays), counting success or failure itself. */
  reload(next: Config): Promise<ReloadOutcome>;
  /** Counts a reload that never reached reload(): refused while draining, or the config could not be read. */
  countReload(result: ReloadResult): void;
}

/**
 * Reloads one at a time, and never once a shutdown has begun. A request while
 * one runs is queued, and further requests join the queued one (it reads the
 * file when it starts, so it sees the newest). Never rejects: whatever goes
 * wrong is logged and counted, and the running config stays in force.
 */
export class ReloadGate {
  /** The reload running now (or resolved). */
  private chain: Promise<void> = Promise.resolve();
  private queued: Promise<void> | undefined;

  constructor(
    private readonly target: Reloadable,
    private readonly logger: Logger,
  ) {}

  /** Queues a reload from `load` (which reads the config file and may throw). */
  request(load: () => Config): Promise<void> {
    if (this.target.isDraining) {
      this.refuse();
      return Promise.resolve();
    }
    if (this.queued !== undefined) return this.queued;
    const queued = this.chain.then(() => {
      this.queued = undefined;
      return this.runOnce(load);
    });
    this.queued = queued;
    this.chain = queued;
    return queued;
  }

  /** Resolves once no reload is running (shutdown waits for this). */
  idle(): Promise<void> {
    return this.chain;
  }

  private refuse(): void {
    this.target.countReload("refused");
    this.logger.warn("reload refused: the proxy is shutting down");
  }

  private async runOnce(load: () => Config): Promise<void> {
    if (this.target.isDraining) {
      this.refuse();
      return;
    }
    const started = performance.now();
    let next: Config;
    try {
      next = load();
    } catch (error) {
      this.target.countReload("failure");
      if (error instanceof ConfigError) {
        this.logger.error({ problems: error.problems.map(formatProblem) }, "reload refused: invalid config; the running config stays in force");
      } else {
        this.logger.error({ err: error }, "reload failed unexpectedly; the running config stays in force");
      }
      return;
    }
    try {
      const outcome = await this.target.reload(next);
      this.logger.level = next.log.level;
      const line = { ...outcome, durationMs: Math.round(performance.now() - started), liveSessions: this.target.sessionTotal };
      if (outcome.restartNeededFor.length > 0) this.logger.warn(line, "config reloaded; some changes need a restart");
      else this.logger.info(line, "config reloaded");
    } catch (error) {
      if (error instanceof ReloadInterrupted) return;
      const known = error instanceof StartupError;
      this.logger.error(known ? { err: error.message } : { err: error }, "reload refused; the running config stays in force");
    }
  }
}
