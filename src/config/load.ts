import { readFileSync } from "node:fs";
import { type Alias, type Document, LineCounter, parseDocument, visit } from "yaml";
import { ConfigError, type ConfigProblem, formatPath } from "./errors.js";
import { type Config, configSchema } from "./schema.js";
import { tlsProblems } from "../tls/material.js";

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
  "tls-cert": [["client", "tls", "cert"]],
  "tls-key": [["client", "tls", "key"]],
  "tls-client-ca": [["client", "tls", "clientCa"]],
  "upstream-tls": [["upstream", "tls", "enabled"]],
  "upstream-tls-ca": [["upstream", "tls", "ca"]],
  "upstream-tls-server-name": [["upstream", "tls", "serverName"]],
  "upstream-tls-cert": [["upstream", "tls", "cert"]],
  "upstream-tls-key": [["upstream", "tls", "key"]],
};

/** Flags that set a process-wide field. */
export const GLOBAL_FLAG_PATHS: Readonly<Record<string, Path>> = {
  "log-level": ["log", "level"],
  "log-format": ["log", "format"],
  admin: ["admin", "listen"],
  "admin-token-file": ["admin", "auth", "tokenFile"],
  "drain-timeout": ["shutdown", "drainTimeout"],
  workers: ["workers"],
};

/**
 * What form a flag's text takes. Flags and variables arrive as text: a count
 * must be a whole number, a switch true or false, and an address stays text
 * (`8080` is a bare port, to be explained, not a number). Flags not listed
 * here are read as before: digits as a number, true/false as a boolean.
 */
const FLAG_FORMS: Readonly<Record<string, "boolean" | "count" | "text">> = {
  keepalive: "boolean",
  "client-keepalive": "boolean",
  "upstream-keepalive": "boolean",
  nodelay: "boolean",
  "upstream-tls": "boolean",
  "tls-cert": "text",
  "tls-key": "text",
  "tls-client-ca": "text",
  "upstream-tls-ca": "text",
  "upstream-tls-server-name": "text",
  "upstream-tls-cert": "text",
  "upstream-tls-key": "text",
  "keepalive-count": "count",
  "client-keepalive-count": "count",
  "upstream-keepalive-count": "count",
  listen: "text",
  upstream: "text",
  admin: "text",
  "admin-token-file": "text",
  name: "text",
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
  const coerced = coerceOverrides(overrides);
  const sources = applyOverrides(raw, coerced.values);
  const result = configSchema.safeParse(raw);
  if (result.success && coerced.problems.length === 0) {
    // Certificates, keys and CAs are read now, so a bad one is refused like any invalid config (startup, reload, check).
    const tls = tlsProblems(result.data);
    if (tls.length === 0) return result.data;
    throw new ConfigError(tls, file);
  }
  throw new ConfigError([...coerced.problems, ...(result.success ? [] : problemsFrom(result.error.issues, sources))], file);
}

/** Parses YAML text into a plain object, or throws a ConfigError naming the line. */
export function parseConfigText(text: string, file: string): Record<string, unknown> {
  const lineCounter = new LineCounter();
  const at = (offset: number): string => {
    const { line, col } = lineCounter.linePos(offset);
    return `${file} line ${line} column ${col}`;
  };
  // logLevel "error": the yaml library would otherwise print its warnings to stderr itself.
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter, logLevel: "error" });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => ({ path: "", message: `${at(e.pos[0])}: ${e.message.split("\n")[0]}` })),
      file,
    );
  }
  const value = documentValue(doc, file, at);
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new ConfigError([{ path: "", message: `${file} must hold a YAML mapping (key: value), not a ${Array.isArray(value) ? "list" : typeof value}` }], file);
  }
  return value as Record<string, unknown>;
}

// The yaml library's own default, written out: a document that expands more
// aliases than this is an alias bomb ("billion laughs"), not a config.
const MAX_ALIAS_COUNT = 100;

/**
 * The document as plain data. Alias problems are not among the parse errors:
 * the yaml library throws them from toJS (an alias with no anchor, too many
 * expansions), and anything it throws is a problem of this file, so it
 * becomes a ConfigError too, never an internal error.
 */
function documentValue(doc: Document, file: string, at: (offset: number) => string): unknown {
  try {
    return doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (error) {
    const message = (error instanceof Error ? error.message : String(error)).split("\n")[0] ?? "";
    const alias = unresolvedAlias(doc);
    if (alias) {
      const where = alias.range ? at(alias.range[0]) : file;
      throw new ConfigError([{ path: "", message: `${where}: alias *${alias.source} has no anchor; define &${alias.source} on an earlier value, or write the value out` }], file);
    }
    if (/alias count/i.test(message)) {
      throw new ConfigError([{ path: "", message: `${file}: aliases expand to too many values (more than ${MAX_ALIAS_COUNT}; an alias bomb?); write the values out` }], file);
    }
    throw new ConfigError([{ path: "", message: `${file}: ${message}` }], file, { cause: error });
  }
}

/** The first alias (`*name`) whose anchor (`&name`) is not defined before it. */
function unresolvedAlias(doc: Document): Alias | undefined {
  let found: Alias | undefined;
  visit(doc, {
    Alias(_, node) {
      if (node.resolve(doc) !== undefined) return undefined;
      found = node;
      return visit.BREAK;
    },
  });
  return found;
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
    setPath(target, path, o.value);
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

/** Overrides with their text turned into values, and a problem for each that has the wrong form. */
function coerceOverrides(overrides: readonly Override[]): { values: Override[]; problems: ConfigProblem[] } {
  const values: Override[] = [];
  const problems: ConfigProblem[] = [];
  for (const o of overrides) {
    const coerced = coerce(o.value, FLAG_FORMS[o.flag]);
    if ("problem" in coerced) problems.push({ path: describeTarget(o.flag), message: coerced.problem, source: o.source });
    else values.push({ ...o, value: coerced.value });
  }
  return { values, problems };
}

/** Flags arrive as text; numbers and booleans written as text become values the schema checks. */
function coerce(value: unknown, form: "boolean" | "count" | "text" | undefined): { value: unknown } | { problem: string } {
  if (typeof value !== "string" || form === "text") return { value };
  if (form === "boolean") {
    if (value === "true" || value === "false") return { value: value === "true" };
    return { problem: `"${value}" is not a switch value; write true or false` };
  }
  if (form === "count") {
    if (/^\d+$/.test(value)) return { value: Number(value) };
    return { problem: `"${value}" is not a whole number; write a whole number such as 3` };
  }
  if (/^\d+$/.test(value)) return { value: Number(value) };
  if (value === "true" || value === "false") return { value: value === "true" };
  return { value };
}

/** The field a flag sets, for a message: `listeners[*].{client,upstream}.noDelay`. */
function describeTarget(flag: string): string {
  const global = GLOBAL_FLAG_PATHS[flag];
  if (global) return formatPath(global);
  const paths = LISTENER_FLAG_PATHS[flag];
  if (!paths?.[0]) return "";
  const legs = paths.map((p) => p[0]);
  const rest = formatPath(paths[0].slice(1));
  return `listeners[*].${legs.length > 1 ? `{${legs.join(",")}}` : legs[0]}${rest ? `.${rest}` : ""}`;
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
