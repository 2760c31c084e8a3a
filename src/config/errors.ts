/** One problem in the effective config: where, what, and where the value came from. */
export interface ConfigProblem {
  /** e.g. `listeners[1].upstream.keepalive.interval` */
  readonly path: string;
  readonly message: string;
  /** The flag or environment variable that set the value, when not the file. */
  readonly source?: string;
}

/** The config cannot be used; every problem found is listed, not just the first. */
export class ConfigError extends Error {
  readonly code = "CONFIG_INVALID";
  constructor(
    readonly problems: readonly ConfigProblem[],
    readonly file?: string,
    options?: { cause?: unknown },
  ) {
    super(problems.map(formatProblem).join("\n"), options);
    this.name = "ConfigError";
  }
}

/** `path (from --flag): message`, one line. */
export function formatProblem(problem: ConfigProblem): string {
  if (problem.source) return `${problem.source}: ${problem.message}${problem.path === "" ? "" : ` (sets ${problem.path})`}`;
  // A problem of the whole file (YAML syntax, no file) names the file and line itself.
  return problem.path === "" ? problem.message : `${problem.path}: ${problem.message}`;
}

/** Renders a zod path like ["listeners", 1, "upstream"] as `listeners[1].upstream`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out;
}
