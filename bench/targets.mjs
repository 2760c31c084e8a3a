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
//   idleConns  fewer idle connections than the others get, with `note` saying why
//
// Every proxy listens on 127.0.0.1:listenPort and forwards to the upstream
// server on 127.0.0.1:upstreamPort, with TCP keepalive on both legs.

import path from "node:path";

/** HAProxy in `mode tcp`, keepalive on both legs, its default thread count unless `threads` is given. */
function haproxy(threads) {
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
      `    bind 127.0.0.1:${ctx.listenPort}`,
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

export const targets = [
  { name: "direct", label: "direct (no proxy)", group: "direct" },
  { name: "haproxy", label: "HAProxy, default threads", group: "reference", start: haproxy(undefined) },
  { name: "haproxy-1t", label: "HAProxy, nbthread 1", group: "reference", start: haproxy(1) },
  { name: "nginx-2w", label: "nginx stream, 2 workers", group: "reference", start: nginx(2) },
  { name: "nginx-1w", label: "nginx stream, 1 worker", group: "reference", start: nginx(1) },
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
  { name: "kp", label: "keepalive-proxy, default (log info)", group: "ours", start: keepaliveProxy() },
  { name: "kp-warn", label: "keepalive-proxy, --log-level warn", group: "ours", start: keepaliveProxy(["--log-level", "warn"]) },
  {
    name: "kp-node24",
    label: "keepalive-proxy, default, on Node 24",
    group: "ours",
    optional: true,
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
    start: keepaliveProxy([], undefined, { MALLOC_TRIM_THRESHOLD_: "268435456", MALLOC_TOP_PAD_: "67108864", MALLOC_MMAP_THRESHOLD_: "268435456" }),
  },
];

/** The keepalive-proxy entry the targets section judges, and the HAProxy entry it is judged against. */
export const judged = { ours: "kp", reference: "haproxy" };
