import { readFileSync } from "node:fs";
import { LineCounter, parseDocument } from "yaml";
import { ConfigError, type ConfigProblem, formatPath } from "./errors.js";
import { type Config, configSchema } from "./schema.js";

/** One value given on the command line or in the environment, with where it came from. */
export interface Override {
  /** The flag's long name without dashes, e.g. `keepalive-idle`. */
  readonly flag: string;
  readonly value: unknown;
  /** How the user wrote it: `--keepalive-idle` or `KEEPALIVE_PROXY_KEEPALIVE_IDLE`. */
  readonly source: string;
}

type Path = readonly string[];

/** Flags that set a field of every listener; the first path is the client leg's, etc. */
export const LISTENER_FLAG_PATHS: Readonly<Record<string, readonly Path[]>> = {
  keepalive: [["client", "keepalive", "enabled"], ["upstream", "keepalive", "enabled"]],
  "keepalive-idle": [["client", "keepalive", "idle"], ["upstream", "keepalive", "idle"]],
  "keepalive-interval": [["client", "keepalive", "interval"], ["upstream", "keepalive", "interval"]],
  "keepalive-count": [["client", "keepalive", "count"], ["upstream", "keepalive", "count"]],
  "user-timeout": [["client", "keepalive", "userTimeout"], ["upstream", "keepalive", "userTimeout"]],
  nodelay: [["client", "noDelay"], ["upstream", "noDelay"]],
  "client-keepalive": [["client", "keepalive", "enabled"]],
  "client-keepalive-idle": [["client", "keepalive", "idle"]],
  "client-keepalive-interval": [["client", "keepalive", "interval"]],
  "client-keepalive-count": [["client", "keepalive", "count"]],
  "client-user-timeout": [["client", "keepalive", "userTimeout"]],
  "upstream-keepalive": [["upstream", "keepalive", "enabled"]],
  "upstream-keepalive-idle": [["upstream", "keepalive", "idle"]],
  "upstream-keepalive-interval": [["upstream", "keepalive", "interval"]],
  "upstream-keepalive-count": [["upstream", "keepalive", "count"]],
  "upstream-user-timeout": [["upstream", "keepalive", "userTimeout"]],
  "connect-timeout": [["upstream", "connectTimeout"]],
  "idle-timeout": [["idleTimeout"]],
  "half-close-timeout": [["halfCloseTimeout"]],
};

/** Flags that set a process-wide field. */
export const GLOBAL_FLAG_PATHS: Readonly<Record<string, Path>> = {
  "log-level": ["log", "level"],
  "log-format": ["log", "format"],
  admin: ["admin", "listen"],
  "drain-timeout": ["shutdown", "drainTimeout"],
};

/** Flags that describe a one-listener setup without a file. */
const SINGLE_LISTENER_FLAGS = ["listen", "upstream", "name"] as const;

// Both-leg flags are applied before one-leg flags, so `--keepalive-idle 60s
// --upstream-keepalive-idle 5s` means 60 s on the client leg and 5 s upstream.
const FLAG_ORDER = Object.keys(LISTENER_FLAG_PATHS).sort((a, b) => legSpecificity(a) - legSpecificity(b));

function legSpecificity(flag: string): number {
  return flag.startsWith("client-") || flag.startsWith("upstream-") ? 1 : 0;
}

export interface LoadOptions {
  /** Config file to read; undefined means none. */
  readonly file: string | undefined;
  /** An already parsed config document, used instead of a file (tests, embedding). */
  readonly document?: Record<string, unknown>;
  readonly overrides: readonly Override[];
}

/**
 * Builds the effective config: schema defaults < file < environment < flags
 * (the CLI has already resolved env < flags into `overrides`). Throws a
 * ConfigError listing every problem, each with its path and, when a flag or
 * variable set the value, its name.
 */
export function loadConfig({ file, document, overrides }: LoadOptions): Config {
  const raw = file !== undefined ? readConfigFile(file) : structuredClone(document ?? {});
  const sources = applyOverrides(raw, overrides);
  const result = configSchema.safeParse(raw);
  if (result.success) return result.data;
  throw new ConfigError(problemsFrom(result.error.issues, sources), file);
}

/** Parses YAML text into a plain object, or throws a ConfigError naming the line. */
export function parseConfigText(text: string, file: string): Record<string, unknown> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const { line, col } = lineCounter.linePos(e.pos[0]);
        return { path: "", message: `${file} line ${line} column ${col}: ${e.message.split("\n")[0]}` };
      }),
      file,
    );
  }
  const value: unknown = doc.toJS();
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new ConfigError([{ path: "", message: `${file} must hold a YAML mapping (key: value), not a ${Array.isArray(value) ? "list" : typeof value}` }], file);
  }
  return value as Record<string, unknown>;
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : String(code);
    throw new ConfigError(
      [{ path: "", message: `cannot read config file ${file} (${why}); pass --config PATH, or give --listen and --upstream to run without a file` }],
      file,
    );
  }
  return parseConfigText(text, file);
}

/** Writes overrides into the raw config; returns which path each source set. */
function applyOverrides(raw: Record<string, unknown>, overrides: readonly Override[]): Map<string, string> {
  const sources = new Map<string, string>();
  const byFlag = new Map(overrides.map((o) => [o.flag, o]));
  const set = (target: Record<string, unknown>, path: Path, o: Override, prefix: PropertyKey[]): void => {
    setPath(target, path, coerce(o.value));
    sources.set(formatPath([...prefix, ...path]), o.source);
  };

  for (const [flag, path] of Object.entries(GLOBAL_FLAG_PATHS)) {
    const o = byFlag.get(flag);
    if (o) set(raw, path, flag === "admin" && o.value === "off" ? { ...o, value: null } : o, []);
  }

  const single = SINGLE_LISTENER_FLAGS.map((f) => byFlag.get(f));
  const [listen, upstream, name] = single;
  if (listen || upstream) {
    const existing = Array.isArray(raw.listeners) && raw.listeners.length === 1 && !(listen && upstream) ? raw.listeners[0] : undefined;
    const listener: Record<string, unknown> = isRecord(existing) ? existing : { name: "default" };
    if (listen) set(listener, ["listen"], listen, ["listeners", 0]);
    if (upstream) set(listener, ["upstream", "address"], upstream, ["listeners", 0]);
    if (name) set(listener, ["name"], name, ["listeners", 0]);
    raw.listeners = [listener];
  }

  const listeners = Array.isArray(raw.listeners) ? raw.listeners : [];
  for (const flag of FLAG_ORDER) {
    const o = byFlag.get(flag);
    if (!o) continue;
    listeners.forEach((listener: unknown, i) => {
      if (!isRecord(listener)) return;
      for (const path of LISTENER_FLAG_PATHS[flag] ?? []) set(listener, path, o, ["listeners", i]);
    });
  }
  return sources;
}

/** Flags arrive as text; numbers and booleans written as text become values the schema checks. */
function coerce(value: unknown): unknown {
  if (typeof value !== "string") return value;
  if (/^\d+$/.test(value)) return Number(value);
  if (value === "true") return true;
  if (value === "false") return false;
  return value;
}

function setPath(target: Record<string, unknown>, path: Path, value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (!isRecord(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1] as string] = value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

interface ZodIssueLike {
  readonly path: readonly PropertyKey[];
  readonly message: string;
  readonly code: string;
  readonly keys?: readonly string[];
}

/** Turns zod issues into problems with paths and fixes; one line per distinct problem. */
function problemsFrom(issues: readonly ZodIssueLike[], sources: Map<string, string>): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const seen = new Set<string>();
  for (const issue of issues.flatMap(splitUnknownKeys)) {
    const path = formatPath(issue.path);
    const source = sources.get(path);
    const message = explainIssue(issue);
    // A flag that sets both legs of every listener would repeat its problem.
    const key = source ? `${source}\u0000${message}` : `${path}\u0000${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    problems.push(source ? { path, message, source } : { path, message });
  }
  return problems;
}

/** One issue per unknown key, so each is reported at its own path. */
function splitUnknownKeys(issue: ZodIssueLike): ZodIssueLike[] {
  if (issue.code !== "unrecognized_keys" || !issue.keys) return [issue];
  return issue.keys.map((key) => ({ ...issue, path: [...issue.path, key], keys: [key] }));
}

function explainIssue(issue: ZodIssueLike): string {
  if (issue.code === "unrecognized_keys") {
    return "unknown key; remove it or check the spelling (config/keepalive-proxy.schema.json lists every key)";
  }
  if (issue.code === "invalid_type" && /received undefined/.test(issue.message)) return "is required";
  return issue.message.replace(/^Invalid input: /, "");
}
