// The targets of the benchmark, one entry each: what run.mjs starts between
// the load generator and the upstream server. To add one (say a
// `--workers 2` mode of keepalive-proxy), add an entry here; nothing else
// needs to know. An entry:
//
//   name     short id used in results and on the command line (--targets)
//   label    what the report calls it
//   group    "direct" (no proxy), "reference" (another proxy) or "ours"
//   start    (ctx) => { cmd, args, files?, env? } — the command to run in its
//            own process group; files are written to ctx.dir first, env is
//            added to the environment. ctx has
//            listenPort, upstreamPort, adminPort, dir, root, node, idleConns
//            and fdLimit (this process's RLIMIT_NOFILE, which children inherit).
//   optional true: only run when named with --targets
//   requires flags that `dist/cli.js --help` must list (e.g. "--workers"); a
//            target whose flags the build lacks is skipped, and run.mjs prints
//            and records why, so the harness runs before and after a flag lands
//   standInFor  run by default only when the named target is skipped for a
//            missing flag, and judged in its place (the report says so)
//   ready    async (ctx) => boolean: polled after the port listens, until true
//            (keepalive-proxy: /readyz, 200 once every worker listens)
//   idleConns  fewer idle connections than the others get, with `note` saying why
//   tls      true: terminates TLS (ctx.tls holds the run's certificate files) and
//            runs the TLS scenarios only; the others run the plaintext ones only
//
// Every proxy listens on 127.0.0.1:listenPort and forwards to the upstream
// server on 127.0.0.1:upstreamPort, with TCP keepalive on both legs; a TLS
// target speaks TLS 1.3 on the client leg (the certificate of tls-cert.mjs)
// and plaintext to the same upstream server.

import { spawnSync } from "node:child_process";
import path from "node:path";

/**
 * HAProxy in `mode tcp`, keepalive on both legs, its default thread count
 * unless `threads` is given; with `tls`, terminating TLS 1.3 on the bind line.
 */
function haproxy(threads, { tls = false } = {}) {
  return (ctx) => {
    // Two fds per proxied connection; HAProxy refuses (or warns) when maxconn
    // cannot fit under the fd limit, so it is sized from the limit we have.
    const maxconn = Math.min(ctx.idleConns + 50, Math.floor((ctx.fdLimit - 40) / 2));
    const config = [
      "global",
      `    maxconn ${maxconn}`,
      ...(threads ? [`    nbthread ${threads}`] : []),
      "defaults",
      "    mode tcp",
      "    option clitcpka",
      "    option srvtcpka",
      "    timeout connect 10s",
      "    timeout client 1h",
      "    timeout server 1h",
      `    maxconn ${maxconn}`,
      "frontend fe",
      `    bind 127.0.0.1:${ctx.listenPort}${tls ? ` ssl crt ${ctx.tls.certWithKey} ssl-min-ver TLSv1.3` : ""}`,
      "    default_backend be",
      "backend be",
      `    server up 127.0.0.1:${ctx.upstreamPort}`,
      "",
    ].join("\n");
    return { cmd: "haproxy", args: ["-db", "-f", path.join(ctx.dir, "haproxy.cfg")], files: { "haproxy.cfg": config } };
  };
}

/** nginx `stream` with so_keepalive on the client leg and proxy_socket_keepalive on the upstream leg. */
function nginx(workers) {
  return (ctx) => {
    const perWorkerFds = Math.max(1024, ctx.fdLimit);
    const config = [
      "load_module /usr/lib/nginx/modules/ngx_stream_module.so;",
      "daemon off;",
      "master_process on;",
      `worker_processes ${workers};`,
      `worker_rlimit_nofile ${perWorkerFds};`,
      `pid ${path.join(ctx.dir, "nginx.pid")};`,
      `error_log ${path.join(ctx.dir, "nginx-error.log")} warn;`,
      // One proxied connection takes two of a worker's connections; size for
      // all of them landing on one worker.
      `events { worker_connections ${2 * ctx.idleConns + 200}; }`,
      "stream {",
      "  server {",
      `    listen 127.0.0.1:${ctx.listenPort} so_keepalive=on;`,
      `    proxy_pass 127.0.0.1:${ctx.upstreamPort};`,
      "    proxy_socket_keepalive on;",
      // Without it nginx ends the whole session on the first FIN, and the
      // upload check (FIN, then the sink's byte count back) could not pass.
      "    proxy_half_close on;",
      "    proxy_connect_timeout 10s;",
      "    proxy_timeout 1h;",
      "  }",
      "}",
      "",
    ].join("\n");
    return { cmd: "nginx", args: ["-p", ctx.dir, "-c", path.join(ctx.dir, "nginx.conf"), "-e", path.join(ctx.dir, "nginx-error.log")], files: { "nginx.conf": config } };
  };
}

/**
 * stunnel in server mode: TLS 1.3 from the client, plaintext to the upstream,
 * keepalive on both legs (`l:` the accepted socket, `r:` the one it connects);
 * in the foreground, logging warnings and worse only.
 */
function stunnel(ctx) {
  const config = [
    "foreground = yes",
    "pid =",
    "debug = warning",
    "[bench]",
    `accept = 127.0.0.1:${ctx.listenPort}`,
    `connect = 127.0.0.1:${ctx.upstreamPort}`,
    `cert = ${ctx.tls.cert}`,
    `key = ${ctx.tls.key}`,
    "sslVersionMin = TLSv1.3",
    "socket = l:SO_KEEPALIVE=1",
    "socket = r:SO_KEEPALIVE=1",
    "",
  ].join("\n");
  return { cmd: "stunnel", args: [path.join(ctx.dir, "stunnel.conf")], files: { "stunnel.conf": config } };
}

/** keepalive-proxy as the CLI runs it; extra flags after the defaults. */
function keepaliveProxy(extra = [], node = (ctx) => ctx.node, env = undefined) {
  return (ctx) => ({
    cmd: node(ctx),
    env,
    args: [
      path.join(ctx.root, "dist/cli.js"),
      "--listen",
      `127.0.0.1:${ctx.listenPort}`,
      "--upstream",
      `127.0.0.1:${ctx.upstreamPort}`,
      // The admin server is on by default; it only gets its own port here so
      // that two instances can run side by side.
      "--admin",
      `127.0.0.1:${ctx.adminPort}`,
      ...extra,
    ],
  });
}

/**
 * Ready when the admin server answers /readyz with 200. With several workers
 * the port listens as soon as the first worker's SO_REUSEPORT socket does;
 * /readyz is 200 only once every worker listens, so a measurement (and the
 * idle scenario's "memory at start") begins with every process up.
 */
async function readyz(ctx) {
  try {
    const res = await fetch(`http://127.0.0.1:${ctx.adminPort}/readyz`, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

export const targets = [
  { name: "direct", label: "direct (no proxy)", group: "direct" },
  { name: "haproxy", label: "HAProxy, default threads", group: "reference", start: haproxy(undefined) },
  { name: "haproxy-1t", label: "HAProxy, nbthread 1", group: "reference", start: haproxy(1) },
  { name: "nginx-2w", label: "nginx stream, 2 workers", group: "reference", start: nginx(2) },
  { name: "nginx-1w", label: "nginx stream, 1 worker", group: "reference", optional: true, start: nginx(1) },
  {
    name: "socat",
    label: "socat fork, keepalive",
    group: "reference",
    // A process per connection: forking is slow on small VMs (about 5 ms
    // here), so 10,000 would take minutes per round to open and to tear down.
    // Memory per connection scales linearly with the count of processes.
    idleConns: 1000,
    note: "1,000 idle connections, not 10,000: one forked process each",
    // backlog: socat's default is 5, which drops SYNs under 32 parallel
    // connects; 511 is nginx's and Node's default.
    start: (ctx) => ({
      cmd: "socat",
      args: [`TCP-LISTEN:${ctx.listenPort},bind=127.0.0.1,fork,reuseaddr,keepalive,backlog=511`, `TCP:127.0.0.1:${ctx.upstreamPort},keepalive`],
    }),
  },
  {
    name: "node-pipe",
    label: "naive Node pipe (bench/naive-pipe-proxy.mjs)",
    group: "reference",
    start: (ctx) => ({ cmd: ctx.node, args: [path.join(ctx.root, "bench/naive-pipe-proxy.mjs"), String(ctx.listenPort), String(ctx.upstreamPort)] }),
  },
  {
    name: "kp",
    label: "keepalive-proxy, --workers auto (default)",
    group: "ours",
    requires: ["--workers"],
    ready: readyz,
    start: keepaliveProxy(["--workers", "auto"]),
  },
  {
    name: "kp-1w",
    label: "keepalive-proxy, --workers 1",
    group: "ours",
    requires: ["--workers"],
    ready: readyz,
    start: keepaliveProxy(["--workers", "1"]),
  },
  {
    name: "haproxy-tls",
    label: "HAProxy TLS, default threads",
    group: "reference",
    tls: true,
    start: haproxy(undefined, { tls: true }),
  },
  {
    name: "stunnel-tls",
    label: "stunnel",
    group: "reference",
    tls: true,
    start: stunnel,
  },
  {
    name: "kp-tls",
    label: "keepalive-proxy TLS, --workers auto (default)",
    group: "ours",
    tls: true,
    requires: ["--workers", "--tls-cert"],
    ready: readyz,
    start: (ctx) => keepaliveProxy(["--workers", "auto", "--tls-cert", ctx.tls.cert, "--tls-key", ctx.tls.key])(ctx),
  },
  {
    name: "kp-tls-1w",
    label: "keepalive-proxy TLS, --workers 1",
    group: "ours",
    tls: true,
    requires: ["--workers", "--tls-cert"],
    ready: readyz,
    start: (ctx) => keepaliveProxy(["--workers", "1", "--tls-cert", ctx.tls.cert, "--tls-key", ctx.tls.key])(ctx),
  },
  {
    // A build from before workers has no --workers flag: kp and kp-1w are then
    // skipped, and this measures the proxy as built (one process) instead.
    name: "kp-asbuilt",
    label: "keepalive-proxy as built, no --workers flag (one process)",
    group: "ours",
    standInFor: "kp",
    ready: readyz,
    start: keepaliveProxy(),
  },
  {
    name: "kp-warn",
    label: "keepalive-proxy, default, --log-level warn",
    group: "ours",
    optional: true,
    ready: readyz,
    start: keepaliveProxy(["--log-level", "warn"]),
  },
  {
    name: "kp-node24",
    label: "keepalive-proxy, default, on Node 24",
    group: "ours",
    optional: true,
    ready: readyz,
    start: keepaliveProxy([], (ctx) => path.join(ctx.root, "node_modules/node/bin/node")),
  },
  {
    // An experiment, not a product setting: glibc keeps freed memory instead
    // of trimming it, so Node's fresh 64 KiB read buffers stop landing on
    // newly mapped pages (page faults in the kernel's copy on every read).
    name: "kp-malloc",
    label: "keepalive-proxy, default, glibc malloc trim off (env)",
    group: "ours",
    optional: true,
    ready: readyz,
    start: keepaliveProxy([], undefined, { MALLOC_TRIM_THRESHOLD_: "268435456", MALLOC_TOP_PAD_: "67108864", MALLOC_MMAP_THRESHOLD_: "268435456" }),
  },
];

/**
 * What the targets section judges: `ours` (or, when it was skipped, its stand-in)
 * against `reference` in the same rounds; `alt` gets a column of its own
 * (same-round ratios to the reference too), and `baseline` is what the
 * per-connection CPU target compares with (issue 12, item 2).
 */
export const judged = { ours: "kp", alt: "kp-1w", reference: "haproxy", baseline: "node-pipe" };

/**
 * What the TLS section judges (issue 13): `ours` against `reference` (≥ 0.8×)
 * and against `rival` (ahead), in the same rounds; `alt` shown beside it.
 */
export const judgedTls = { ours: "kp-tls", alt: "kp-tls-1w", reference: "haproxy-tls", rival: "stunnel-tls" };

/** The long flags `dist/cli.js --help` lists (empty, with `error` set, when the help does not run). */
export function cliFlags(root, node = process.execPath) {
  const r = spawnSync(node, [path.join(root, "dist/cli.js"), "--help"], { encoding: "utf8", timeout: 30_000 });
  const text = `${r.stdout ?? ""}\n${r.stderr ?? ""}`;
  const flags = new Set(text.match(/--[a-z][a-z0-9-]*/g) ?? []);
  if (r.status !== 0 || r.error) flags.error = `dist/cli.js --help exited ${r.status ?? r.error?.message}: ${text.trim().split("\n")[0]}`;
  return flags;
}

/** Why target cannot run with a build whose help lists `flags`, or undefined when it can. */
export function missingRequirement(target, flags) {
  const missing = (target.requires ?? []).filter((f) => !flags.has(f));
  if (missing.length === 0) return undefined;
  if (flags.error) return flags.error;
  return `dist/cli.js --help does not list ${missing.join(", ")} (this build predates it)`;
}

/**
 * The targets a run measures: those named (direct always), or every one that
 * is not optional; minus those whose flags the build lacks (returned in
 * `skipped` with the reason), plus the stand-in of a skipped default target.
 */
export function chooseTargets(names, flags) {
  const wanted = names ? new Set([...names, "direct"]) : undefined;
  if (wanted) for (const name of wanted) if (!targets.some((t) => t.name === name)) throw new Error(`unknown target ${name}`);
  const asked = targets.filter((t) => (wanted ? wanted.has(t.name) : !t.optional));
  const skipped = asked.filter((t) => missingRequirement(t, flags)).map((t) => ({ name: t.name, label: t.label, reason: missingRequirement(t, flags) }));
  const isSkipped = (name) => skipped.some((s) => s.name === name);
  // A stand-in runs by default only in place of a target that was skipped.
  const chosen = asked.filter((t) => !isSkipped(t.name) && (wanted || !t.standInFor || isSkipped(t.standInFor)));
  return { chosen, skipped };
}
