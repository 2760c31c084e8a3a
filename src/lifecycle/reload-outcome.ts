import type { Config } from "../config/schema.js";

/** Outcome of a reload, for logs and the reloads metric. */
export interface ReloadOutcome {
  readonly started: string[];
  readonly updated: string[];
  readonly stopped: string[];
  /** `old→new`: listeners renamed on the same address, which kept their socket. */
  readonly renamed: string[];
  /** Settings that changed but take effect only after a restart. */
  readonly restartNeededFor: string[];
}

/** Settings a reload cannot apply to a running process. */
export function restartNeededFor(current: Config, next: Config): string[] {
  const needed: string[] = [];
  if (JSON.stringify(current.admin.listen) !== JSON.stringify(next.admin.listen)) needed.push("admin.listen");
  if (current.admin.maxConnections !== next.admin.maxConnections) needed.push("admin.maxConnections");
  if (JSON.stringify(current.admin.auth) !== JSON.stringify(next.admin.auth)) needed.push("admin.auth");
  if (current.log.format !== next.log.format) needed.push("log.format");
  if (current.workers !== next.workers) needed.push("workers");
  return needed;
}
