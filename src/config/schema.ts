import { z } from "zod";
import { describeDuration, formatDuration, MAX_TIMER_MS, parseDuration } from "../util/duration.js";
import { cidrProblem } from "../proxy/admission/access-list.js";
import { type AddressRole, parseHostPort } from "../util/host-port.js";

/**
 * The one source of truth for the config file: types, defaults, validation
 * and the JSON Schema exported to config/keepalive-proxy.schema.json.
 * Durations are milliseconds once parsed.
 *
 * What 0 means, the same everywhere: a timeout that ends a session or a wait
 * (idleTimeout, maxSessionDuration, headerTimeout) is off at 0; userTimeout 0
 * leaves the kernel's default; connectTimeout must be more than 0; the
 * periods drainTimeout, retryBackoff and cooldown are none at 0 (no drain, no
 * wait, no cool-down). No value makes a timer fire at once by accident.
 */

// Kernel limits (include/net/tcp.h): MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT.
const MAX_KEEPALIVE_SECONDS = 32_767;
const MAX_KEEPALIVE_COUNT = 127;
/** The most retries a session may make (the schema's bound on `retries`). */
const MAX_RETRIES = 10;

/**
 * How a parsed field is written back (by `check`): its value is milliseconds
 * or a HostPort, and a bare number would read back as seconds. Filled in as
 * the schema below is built; read by config/written-form.ts.
 */
export const writtenForms = z.registry<{ readonly form: "duration" | "address" }>();
/** Far more than any machine this runs on has cores; a typo such as 1000 is refused. */
const MAX_WORKERS = 256;
// Far above any need (a scraper or two and a probe), far below a descriptor limit.
const MAX_ADMIN_CONNECTIONS = 10_000;

const durationInput = z.union([z.string(), z.number()]);

/**
 * A duration field: `500ms`, `30s`, `5m`, `2h`, or a number of seconds, at
 * most what a timer can hold (MAX_TIMER_MS). `check` adds field-specific
 * bounds; the description must say what 0 means.
 */
function duration(description: string, check?: (ms: number) => string | undefined) {
  const schema = durationInput.describe(description).transform((value, ctx) => {
    const ms = parseDuration(value);
    if (ms === undefined) {
      const negative = String(value).trim().startsWith("-");
      ctx.addIssue({ code: "custom", message: `"${value}" is not a duration${negative ? " (durations cannot be negative)" : ""}; write it like 500ms, 30s, 5m or 2h` });
      return z.NEVER;
    }
    const problem = ms > MAX_TIMER_MS ? tooLong(value) : check?.(ms);
    if (problem) {
      ctx.addIssue({ code: "custom", message: problem });
      return z.NEVER;
    }
    return ms;
  });
  schema.register(writtenForms, { form: "duration" });
  return schema;
}

function tooLong(value: string | number): string {
  return `${typeof value === "number" ? `${value} (seconds)` : `"${value}"`} is longer than a timer can hold; the most is ${MAX_TIMER_MS}ms (about ${describeDuration(MAX_TIMER_MS)})`;
}

/** Keepalive idle and interval are set in whole seconds: the kernel's unit. */
function keepaliveSeconds(what: string) {
  return (ms: number): string | undefined => {
    if (ms < 1000) return `${what} must be at least 1s (the kernel counts whole seconds); got ${ms}ms`;
    if (ms % 1000 !== 0) return `${what} must be whole seconds (the kernel's unit); got ${ms}ms, round it to ${Math.round(ms / 1000)}s`;
    if (ms > MAX_KEEPALIVE_SECONDS * 1000) return `${what} must be at most ${MAX_KEEPALIVE_SECONDS}s (kernel limit)`;
    return undefined;
  };
}

/** A HOST:PORT field. A YAML number (`listen: 8080`) is a bare port; the message says what to write. */
function address(description: string, allowPortZero: boolean) {
  const role: AddressRole = allowPortZero ? "listen" : "connect";
  const input = z.string({ error: (issue) => (typeof issue.input === "number" ? describeAddressProblem(String(issue.input), allowPortZero, role) : undefined) });
  const schema = input.describe(description).transform((value, ctx) => {
    const parsed = parseHostPort(value, { allowPortZero, role });
    if (typeof parsed === "string") {
      ctx.addIssue({ code: "custom", message: parsed });
      return z.NEVER;
    }
    return parsed;
  });
  schema.register(writtenForms, { form: "address" });
  return schema;
}

function describeAddressProblem(text: string, allowPortZero: boolean, role: AddressRole): string {
  const parsed = parseHostPort(text, { allowPortZero, role });
  return typeof parsed === "string" ? parsed : `write it as text: "${text}"`;
}

export const DEFAULT_KEEPALIVE = {
  /** First probe after 60 s idle: well inside the shortest common NAT idle timeout (AWS NLB 350 s, Azure LB 4 min). */
  idle: "60s",
  /** Then one probe every 10 s. */
  interval: "10s",
  /** Three unanswered probes: a dead peer is found about 90 s after the last byte. */
  count: 3,
} as const;

const keepaliveSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe("SO_KEEPALIVE on this leg."),
    idle: duration("TCP_KEEPIDLE: idle time before the first probe, whole seconds from 1s (0 is refused: keepalive is turned off with enabled: false).", keepaliveSeconds("keepalive idle")).prefault(
      DEFAULT_KEEPALIVE.idle,
    ),
    interval: duration("TCP_KEEPINTVL: time between unanswered probes, whole seconds from 1s (0 is refused).", keepaliveSeconds("keepalive interval")).prefault(
      DEFAULT_KEEPALIVE.interval,
    ),
    count: z
      .number()
      .int("keepalive count must be a whole number")
      .min(1, "keepalive count must be at least 1")
      .max(MAX_KEEPALIVE_COUNT, `keepalive count must be at most ${MAX_KEEPALIVE_COUNT} (kernel limit)`)
      .default(DEFAULT_KEEPALIVE.count)
      .describe("TCP_KEEPCNT: unanswered probes before the leg is declared dead."),
    // The general duration bound (2^31-1 ms) is also the most the kernel's int option takes.
    userTimeout: duration(
      "TCP_USER_TIMEOUT: how long sent data may stay unacknowledged before the leg is declared dead. Default idle + interval × count; 0 leaves the kernel default (about 15 minutes).",
    ).optional(),
  })
  .describe("TCP keepalive for one leg.");

const legSchema = z.strictObject({
  keepalive: keepaliveSchema.prefault({}),
  noDelay: z.boolean().default(true).describe("TCP_NODELAY: forward small writes at once instead of waiting (Nagle)."),
});

function cidrList(description: string) {
  return z
    .array(
      z.string().superRefine((value, ctx) => {
        const problem = cidrProblem(value);
        if (problem) ctx.addIssue({ code: "custom", message: problem });
      }),
    )
    .default([])
    .describe(description);
}

/** A PEM file path (certificate, key or CA bundle); read at startup, on SIGHUP and by `check`. */
function pemFile(description: string) {
  return z.string().min(1, "give a file path").describe(description);
}

const TLS_VERSIONS = ["TLSv1.2", "TLSv1.3"] as const;

/** TLS termination on the client leg: the proxy is the TLS server. */
const clientTlsSchema = z
  .strictObject({
    cert: pemFile("PEM certificate the proxy presents to clients, its chain after it.").optional(),
    key: pemFile("PEM private key of `cert`.").optional(),
    certificates: z
      .array(z.strictObject({ cert: pemFile("PEM certificate (chain after it)."), key: pemFile("PEM private key of `cert`.") }))
      .min(1)
      .optional()
      .describe("Several certificates chosen by the client's SNI; the first is the default. Use instead of cert and key."),
    clientCa: pemFile("PEM CA bundle: when set, clients must present a certificate signed by it (mutual TLS).").optional(),
    minVersion: z.enum(TLS_VERSIONS).default("TLSv1.2").describe("Oldest TLS version accepted from clients."),
    handshakeTimeout: duration(
      "Reset a client whose TLS handshake has not finished within this (reason client_tls_handshake_timeout). 0 = off: wait as long as the client stays connected.",
    ).prefault("10s"),
  })
  .superRefine((tls, ctx) => {
    const single = tls.cert !== undefined || tls.key !== undefined;
    if (single === (tls.certificates !== undefined)) {
      ctx.addIssue({ code: "custom", path: ["cert"], message: "give either cert and key, or certificates (a list of {cert, key}), not both and not neither" });
    } else if (single && (tls.cert === undefined || tls.key === undefined)) {
      ctx.addIssue({ code: "custom", path: [tls.cert === undefined ? "cert" : "key"], message: "cert and key go together: give both" });
    }
  })
  .describe("TLS termination on the client leg (the proxy is the TLS server); absent = plaintext.");

/** TLS origination on the upstream leg: the proxy is the TLS client. */
const upstreamTlsSchema = z
  .strictObject({
    enabled: z.boolean().default(false).describe("Speak TLS to the upstream."),
    ca: pemFile("PEM CA bundle the upstream's certificate must chain to. Default: the system's trusted CAs.").optional(),
    serverName: z.string().min(1).optional().describe("SNI and the name verified in the upstream's certificate. Default: the upstream's host name."),
    cert: pemFile("PEM client certificate for mutual TLS to the upstream.").optional(),
    key: pemFile("PEM private key of `cert`.").optional(),
    verify: z.boolean().default(true).describe("Verify the upstream's certificate and name. false is insecure: warned at startup and by check."),
  })
  .superRefine((tls, ctx) => {
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      ctx.addIssue({ code: "custom", path: [tls.cert === undefined ? "cert" : "key"], message: "cert and key go together: give both" });
    }
  })
  .describe("TLS origination on the upstream leg (the proxy is the TLS client).");

const upstreamSchema = legSchema
  .extend({
    address: address("Upstream HOST:PORT. A host name is resolved for every new connection and each of its addresses is a candidate.", false).optional(),
    addresses: z
      .array(address("Upstream HOST:PORT.", false))
      .min(1, "addresses needs at least one HOST:PORT")
      .optional()
      .describe("Several upstreams, tried as `balance` says; use instead of `address`."),
    balance: z
      .enum(["failover", "round-robin"])
      .default("failover")
      .describe("failover: try the addresses in the written order; round-robin: rotate the first choice per session."),
    retries: z
      .number()
      .int()
      .min(0)
      .max(10, "retries must be at most 10")
      .optional()
      .describe(
        "Further connect attempts per session after a failed one, each on the next address. Default: every resolved address of every upstream is tried once (at most 8 attempts), so one name with several addresses fails over like several names do.",
      ),
    retryBackoff: duration("Wait before the first retry; doubles with each retry. 0 = retry at once.").prefault("50ms"),
    failureThreshold: z.number().int().min(1).default(3).describe("Consecutive failed connects after which an address is skipped for the cool-down."),
    cooldown: duration("How long an address that kept failing is tried last. 0 = no cool-down: it keeps its place.").prefault("30s"),
    connectTimeout: duration(
      "Give up a connect attempt after this long (each address gets its own attempt). Must be more than 0: a connect always has a bound.",
      (ms) =>
        ms < 1
          ? "connect timeout must be more than 0 (there is no \"off\": unbounded, a connect to a host that drops SYNs would wait out the kernel's SYN retries, about 2 minutes per address); write e.g. 10s"
          : undefined,
    ).prefault("10s"),
    proxyProtocol: z.enum(["off", "v1", "v2"]).default("off").describe("Send a PROXY protocol header to the upstream so it sees the client's address."),
    tls: upstreamTlsSchema.optional(),
  })
  .superRefine((upstream, ctx) => {
    if ((upstream.address === undefined) === (upstream.addresses === undefined)) {
      ctx.addIssue({ code: "custom", path: ["address"], message: "give exactly one of address (HOST:PORT) or addresses (a list)" });
    }
    const problem = backoffProblem(upstream.retryBackoff, upstream.retries);
    if (problem) ctx.addIssue({ code: "custom", path: ["retryBackoff"], message: problem });
  })
  .describe("Where sessions are forwarded, and the upstream leg's socket options.");

/**
 * The backoff doubles per retry, so its last wait is retryBackoff × 2^(retries−1);
 * that wait must fit a timer too. Without `retries` the most a session may
 * make (MAX_RETRIES) is assumed, since the default grows with the addresses.
 */
function backoffProblem(backoffMs: number, retries: number | undefined): string | undefined {
  const n = retries ?? MAX_RETRIES;
  if (n < 1 || backoffMs * 2 ** (n - 1) <= MAX_TIMER_MS) return undefined;
  const most = Math.floor(MAX_TIMER_MS / 2 ** (n - 1) / 1000) * 1000;
  return `retryBackoff doubles with each retry, so with ${n} retries${retries === undefined ? " (the most a session may make when retries is not set)" : ""} the last wait would be longer than a timer can hold (${MAX_TIMER_MS}ms, about ${describeDuration(MAX_TIMER_MS)}); write at most ${formatDuration(most)}`;
}

const clientSchema = legSchema.extend({
  proxyProtocol: z
    .strictObject({
      accept: z.enum(["off", "v1", "v2", "any"]).default("off").describe("Expect a PROXY protocol header from a load balancer in front."),
      trustedSources: cidrList("Only these sources may connect when accept is on; others are reset."),
      headerTimeout: duration(
        "Reset a client whose header has not arrived within this. 0 = off: wait for the header as long as the trusted client stays connected.",
      ).prefault("5s"),
    })
    .prefault({})
    .describe("PROXY protocol from a load balancer in front."),
  tls: clientTlsSchema.optional(),
});

export const listenerSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[a-zA-Z][a-zA-Z0-9_-]{0,62}$/, "name must start with a letter and use letters, digits, - or _ (it becomes a metrics label)")
    .describe("Listener name, used in logs and as the `listener` metrics label."),
  listen: address("HOST:PORT to accept clients on; [::]:PORT for all IPv6 and IPv4 interfaces.", true),
  upstream: upstreamSchema,
  client: clientSchema.prefault({}).describe("The client leg's socket options."),
  idleTimeout: duration("Reset a session after this long with no byte either way. 0 (the default) means never: legacy sessions idle for hours.").prefault(0),
  maxSessionDuration: duration("Reset a session this long after it started. 0 (the default) means never.").prefault(0),
  halfCloseTimeout: duration(
    "After one side has sent its FIN, reset both legs when no byte has moved the other way for this long (reason proxy_half_close_timeout). 0 (the default) means never; 5m to 1h suits most services.",
  ).prefault(0),
  maxConnections: z.number().int().min(0).default(0).describe("Live sessions this listener accepts; over it a new client is reset at once. 0 = no limit."),
  access: z
    .strictObject({
      allow: cidrList("Client CIDRs allowed; empty allows all not denied."),
      deny: cidrList("Client CIDRs denied; deny wins over allow."),
    })
    .prefault({})
    .describe("Client access control by CIDR, IPv4 and IPv6."),
})
  .superRefine((listener, ctx) => {
    const pp = listener.client.proxyProtocol;
    if (pp.accept !== "off" && listener.client.tls !== undefined) {
      // The header comes before the TLS ClientHello; reading it first is not built yet.
      ctx.addIssue({ code: "custom", path: ["client", "tls"], message: "client.tls together with client.proxyProtocol.accept is not supported yet; terminate TLS on the load balancer, or turn one of them off" });
    }
    if (pp.accept !== "off" && pp.trustedSources.length === 0) {
      ctx.addIssue({ code: "custom", path: ["client", "proxyProtocol", "trustedSources"], message: "list the load balancers' CIDRs: a PROXY header is accepted only from trusted sources" });
    }
  });

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

export const configSchema = z
  .strictObject({
    $schema: z.string().optional().describe("Path to the JSON Schema, for editors."),
    log: z
      .strictObject({
        level: z.enum(LOG_LEVELS).default("info").describe("Minimum level logged."),
        format: z.enum(["json", "pretty"]).default("json").describe("json: one JSON object per line; pretty: for humans (pino-pretty)."),
        sessionOpened: z.boolean().default(false).describe("Write a `session opened` info line when a session's upstream is connected."),
        progressInterval: duration(
          "Write a `session progress` info line for every session older than this, once per this interval, with bytes each way so far and both legs' TCP_INFO. 0 (the default) = off.",
          (ms) => (ms > 0 && ms < 1000 ? `log.progressInterval must be 0 (off) or at least 1s; got ${ms}ms` : undefined),
        ).prefault(0),
      })
      .prefault({}),
    admin: z
      .strictObject({
        listen: address("HOST:PORT of the admin HTTP server (/, /status.json, /metrics, /healthz, /readyz, /connections).", true)
          .nullable()
          .prefault("127.0.0.1:9464"),
        maxConnections: z
          .number()
          .int()
          .min(1, "admin.maxConnections must be at least 1: the admin server always has a cap, so that idle connections cannot use up the descriptors")
          .max(MAX_ADMIN_CONNECTIONS)
          .default(64)
          .describe("Admin connections open at once; beyond it an idle one gives way or the new one is reset, and counted. At least 1 (there is no unlimited)."),
        auth: z
          .strictObject({
            tokenFile: z
              .string()
              .min(1, "admin.auth.tokenFile must name a file")
              .nullable()
              .default(null)
              .describe(
                "File holding the admin token (surrounding whitespace ignored). When set, /, /status.json, /connections and /metrics require `Authorization: Bearer <token>`; /healthz and /readyz stay open. null (the default): no token.",
              ),
            metricsOpen: z.boolean().default(false).describe("Leave /metrics open even with a token, for scrapers that cannot send one."),
          })
          .prefault({})
          .describe("Access control for the admin server."),
      })
      .prefault({})
      .describe("Admin HTTP server; loopback only by default. Set listen to null to turn it off."),
    workers: z
      .union([z.literal("auto"), z.number().int().min(1).max(MAX_WORKERS)], {
        error: `workers must be "auto" (one per CPU this process may use) or a whole number from 1 to ${MAX_WORKERS}`,
      })
      .default("auto")
      .describe(
        "Worker processes that accept and forward, each on its own SO_REUSEPORT socket, under one supervisor. auto (the default): one per CPU the process may use; 1: a single process, no supervisor.",
      ),
    limits: z
      .strictObject({
        maxConnections: z.number().int().min(0).default(0).describe("Live sessions across all listeners; 0 = no limit."),
      })
      .prefault({}),
    shutdown: z
      .strictObject({
        drainTimeout: duration("On SIGTERM, how long live sessions may finish before they are reset. 0 = no drain: reset them at once.").prefault("30s"),
      })
      .prefault({}),
    listeners: z.array(listenerSchema).min(1, "at least one listener is needed").describe("Named listeners."),
  })
  .superRefine((config, ctx) => {
    const seen = new Set<string>();
    config.listeners.forEach((l, i) => {
      if (seen.has(l.name)) ctx.addIssue({ code: "custom", path: ["listeners", i, "name"], message: `listener name "${l.name}" is used twice; names must be unique` });
      seen.add(l.name);
    });
  });

/** The config file as written (durations as text, defaults not yet filled in). */
export type ConfigInput = z.input<typeof configSchema>;
/** The validated config with every default filled in and durations in ms. */
export type Config = z.output<typeof configSchema>;
export type ListenerConfig = z.output<typeof listenerSchema>;
export type UpstreamConfig = z.output<typeof upstreamSchema>;
export type KeepaliveConfig = z.output<typeof keepaliveSchema>;
export type ClientTlsConfig = z.output<typeof clientTlsSchema>;
export type UpstreamTlsConfig = z.output<typeof upstreamTlsSchema>;
