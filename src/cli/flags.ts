import type { Options } from "yargs";

/** Prefix of every environment variable; `--keepalive-idle` is KEEPALIVE_PROXY_KEEPALIVE_IDLE. */
export const ENV_PREFIX = "KEEPALIVE_PROXY";

const LEG_FLAGS = {
  keepalive: { type: "boolean", desc: "SO_KEEPALIVE on {legs} (default on; --no-{name} turns it off)" },
  "keepalive-idle": { type: "string", desc: "Idle time before the first keepalive probe on {legs}, whole seconds (default 60s)" },
  "keepalive-interval": { type: "string", desc: "Time between unanswered probes on {legs} (default 10s)" },
  "keepalive-count": { type: "string", desc: "Unanswered probes on {legs} before the peer is declared dead (default 3)" },
  "user-timeout": {
    type: "string",
    desc: "TCP_USER_TIMEOUT on {legs}: max time sent data may stay unacknowledged (default idle + interval × count; 0 = kernel default, ~15 min)",
  },
} as const satisfies Record<string, { type: "boolean" | "string"; desc: string }>;

/** Every run-time flag, without defaults: the schema owns defaults, and an unset flag must not override the file. */
export function proxyFlags(): Record<string, Options> {
  const flags: Record<string, Options> = {
    config: { type: "string", group: "Config:", desc: "YAML config file (default config/keepalive-proxy.yaml when no --listen is given)" },
    listen: { type: "string", group: "One listener without a file:", desc: "HOST:PORT to accept clients on, e.g. 0.0.0.0:6432 or [::]:6432" },
    upstream: { type: "string", group: "One listener without a file:", desc: "HOST:PORT to forward to; a name is resolved per connection" },
    name: { type: "string", group: "One listener without a file:", desc: "Listener name for logs and metrics (default \"default\")" },
    "connect-timeout": { type: "string", group: "Sessions:", desc: "Reset the client if the upstream does not accept within this (default 10s; per address when there are several)" },
    "idle-timeout": { type: "string", group: "Sessions:", desc: "Reset a session with no byte either way for this long (default 0 = never)" },
    "half-close-timeout": {
      type: "string",
      group: "Sessions:",
      desc: "After one side's FIN, reset both legs when no byte moves the other way for this long (default 0 = never; e.g. 10m)",
    },
    nodelay: { type: "boolean", group: "Sessions:", desc: "TCP_NODELAY on both legs (default on)" },
    "tls-cert": { type: "string", group: "TLS:", desc: "Terminate TLS on the client leg with this PEM certificate (chain after it); with --tls-key" },
    "tls-key": { type: "string", group: "TLS:", desc: "PEM private key of --tls-cert" },
    "tls-client-ca": { type: "string", group: "TLS:", desc: "Require client certificates signed by this PEM CA bundle (mutual TLS)" },
    "upstream-tls": { type: "boolean", group: "TLS:", desc: "Speak TLS to the upstream (verified against the system's CAs unless --upstream-tls-ca)" },
    "upstream-tls-ca": { type: "string", group: "TLS:", desc: "PEM CA bundle the upstream's certificate must chain to" },
    "upstream-tls-server-name": { type: "string", group: "TLS:", desc: "SNI and verified name for the upstream (default: its host name)" },
    "upstream-tls-cert": { type: "string", group: "TLS:", desc: "PEM client certificate for mutual TLS to the upstream; with --upstream-tls-key" },
    "upstream-tls-key": { type: "string", group: "TLS:", desc: "PEM private key of --upstream-tls-cert" },
    "log-level": { type: "string", group: "Process:", choices: ["fatal", "error", "warn", "info", "debug", "trace", "silent"], desc: "Minimum log level (default info)" },
    "log-format": { type: "string", group: "Process:", choices: ["json", "pretty"], desc: "json lines, or pretty for humans (default json)" },
    admin: { type: "string", group: "Process:", desc: "HOST:PORT for /metrics, /healthz, /readyz, /connections, or off (default 127.0.0.1:9464)" },
    "admin-token-file": {
      type: "string",
      group: "Process:",
      desc: "File holding the admin token: /, /status.json, /connections and /metrics then require Authorization: Bearer <token> (default none)",
    },
    workers: {
      type: "string",
      group: "Process:",
      desc: "Worker processes, each accepting on its own SO_REUSEPORT socket: auto = one per CPU (default), 1 = a single process",
    },
    "drain-timeout": { type: "string", group: "Process:", desc: "On SIGTERM, time live sessions get to finish before reset (default 30s)" },
  };
  for (const [prefix, legs, group] of [
    ["", "both legs", "Keepalive, both legs:"],
    ["client-", "the client leg", "Keepalive, client leg only:"],
    ["upstream-", "the upstream leg", "Keepalive, upstream leg only:"],
  ] as const) {
    for (const [name, spec] of Object.entries(LEG_FLAGS)) {
      const flag = `${prefix}${name}`;
      flags[flag] = { type: spec.type, group, desc: spec.desc.replace("{legs}", legs).replace("{name}", flag) };
    }
  }
  return flags;
}

/** The env variable that sets a flag. */
export function envName(flag: string): string {
  return `${ENV_PREFIX}_${flag.toUpperCase().replace(/-/g, "_")}`;
}
