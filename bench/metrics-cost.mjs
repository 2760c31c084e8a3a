#!/usr/bin/env node
// What the metrics cost: the same loopback load through a proxy with metrics
// (startProxy, as the CLI runs it) and without (a Proxy built with no metrics
// hooks), in one run, rounds alternating so that drift hits both alike.
//
//   npm run build && node bench/metrics-cost.mjs [--rounds 3] [--bulk-mib 512] [--sessions 4000]
//
// Each proxy runs in a child process of its own; the load generator and the
// upstream servers run here. Reported per variant (median of the rounds):
//   bulk:  MiB/s through 4 parallel sessions streaming client -> upstream,
//          and the proxy's CPU time per GiB;
//   churn: short sessions per second (connect, 64 bytes each way, close),
//          32 at a time, and the proxy's CPU time per session;
//   scrape (metrics on only): time to render /metrics with 1000 live sessions.
// Then, in this process and free of loopback noise, the metrics' own work:
//   the hooks one session triggers (accept, connect, close), and a scrape
//   with 0, 1000 and 10000 live sessions whose bytes are counted then.

import { fork } from "node:child_process";
import { once } from "node:events";
import net from "node:net";
import { parseArgs } from "node:util";

const MiB = 1024 * 1024;

if (process.argv[2] === "--proxy-child") await proxyChild(process.argv[3], Number(process.argv[4]), Number(process.argv[5]));
else await main().catch((error) => fail(error.stack ?? String(error)));

/** The proxy side: one proxy with or without metrics, driven over IPC. */
async function proxyChild(variant, sinkPort, echoPort) {
  const pino = (await import("pino")).default;
  const { loadConfig } = await import("../dist/config/load.js");
  const { KeepaliveProxy, startProxy } = await import("../dist/main.js");
  const { loadLibc } = await import("../dist/net/libc.js");
  const { SocketOptions } = await import("../dist/net/socket-options.js");
  const document = {
    admin: { listen: null },
    listeners: [
      { name: "bulk", listen: "127.0.0.1:0", upstream: { address: `127.0.0.1:${sinkPort}` } },
      { name: "churn", listen: "127.0.0.1:0", upstream: { address: `127.0.0.1:${echoPort}` } },
    ],
  };
  const config = loadConfig({ file: undefined, document, overrides: [] });
  // Every session still logs its `session closed` line, as in production; to /dev/null.
  const logger = pino({ level: "info" }, pino.destination({ dest: "/dev/null", sync: true }));
  let proxy;
  if (variant === "on") proxy = await startProxy(config, { logger });
  else {
    proxy = new KeepaliveProxy(config, new SocketOptions(loadLibc()), logger, undefined);
    await proxy.start();
  }
  const ports = Object.fromEntries([...proxy.listeners].map(([name, l]) => [name, l.address().port]));
  process.on("message", async (msg) => {
    if (msg.cmd === "cpu") process.send({ cpu: process.cpuUsage() });
    else if (msg.cmd === "scrape") {
      const times = [];
      let body = "";
      for (let i = 0; i < 20; i++) {
        const t = performance.now();
        body = await proxy.metrics.scrape();
        times.push(performance.now() - t);
      }
      process.send({ scrapeMs: median(times), bytes: body.length, live: proxy.sessionTotal });
    } else if (msg.cmd === "stop") {
      await proxy.shutdown(0);
      process.exit(0);
    }
  });
  process.send({ ports });
}

async function main() {
  const { values } = parseArgs({
    options: { rounds: { type: "string", default: "3" }, "bulk-mib": { type: "string", default: "512" }, sessions: { type: "string", default: "4000" } },
  });
  const rounds = Number(values.rounds);
  const bulkMiB = Number(values["bulk-mib"]);
  const sessions = Number(values.sessions);

  const sink = await serve((s) => {
    s.on("error", () => {});
    s.resume();
    s.on("end", () => s.end());
  });
  const echo = await serve((s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  const results = { off: [], on: [] };
  console.log(`Node ${process.version}, ${rounds} rounds, bulk ${bulkMiB} MiB over 4 sessions, churn ${sessions} sessions 32 at a time`);
  for (let round = 0; round < rounds; round++) {
    for (const variant of round % 2 === 0 ? ["off", "on"] : ["on", "off"]) {
      const child = await startChild(variant, sink, echo);
      // Warm-up: JIT, first allocations.
      await within(churn(child.ports.churn, 500), 120_000, "the warm-up churn");
      await within(bulk(child.ports.bulk, 64), 120_000, "the warm-up bulk");
      const cpu0 = await child.cpu();
      const bulkMs = await within(bulk(child.ports.bulk, bulkMiB), 300_000, "the bulk run");
      const cpu1 = await child.cpu();
      const churnMs = await within(churn(child.ports.churn, sessions), 300_000, "the churn run");
      const cpu2 = await child.cpu();
      const r = {
        mibPerS: bulkMiB / (bulkMs / 1000),
        cpuMsPerGiB: (cpuMs(cpu0, cpu1) / bulkMiB) * 1024,
        sessionsPerS: sessions / (churnMs / 1000),
        cpuUsPerSession: (cpuMs(cpu1, cpu2) * 1000) / sessions,
      };
      if (variant === "on") Object.assign(r, await within(scrapeWithLiveSessions(child, 1000), 120_000, "the scrape with live sessions"));
      results[variant].push(r);
      console.log(`round ${round + 1} metrics ${variant.padEnd(3)} ${format(r)}`);
      await child.stop();
    }
  }
  const med = (variant, key) => median(results[variant].map((r) => r[key]));
  console.log("\nmedian of the rounds:");
  console.log("                          metrics off   metrics on   cost   paired cost");
  for (const [key, label, better] of [
    ["mibPerS", "bulk MiB/s", "higher"],
    ["cpuMsPerGiB", "bulk proxy CPU ms/GiB", "lower"],
    ["sessionsPerS", "churn sessions/s", "higher"],
    ["cpuUsPerSession", "churn proxy CPU µs/session", "lower"],
  ]) {
    const off = med("off", key);
    const on = med("on", key);
    const costOf = (o, n) => (better === "higher" ? (o - n) / o : (n - o) / o);
    // Each round ran both variants back to back: the median of the per-round
    // costs is less hurt by load that comes and goes than the cost of the medians.
    const paired = median(results.off.map((o, i) => costOf(o[key], results.on[i][key])));
    console.log(
      `${label.padEnd(26)}${off.toFixed(1).padStart(11)}${on.toFixed(1).padStart(13)}   ${(costOf(off, on) * 100).toFixed(1).padStart(5)}%   ${(paired * 100).toFixed(1).padStart(5)}%`,
    );
  }
  const s = results.on.at(-1);
  console.log(`scrape with ${s.live} live sessions: ${med("on", "scrapeMs").toFixed(2)} ms median, ${s.scrapeBytes} bytes`);
  await metricsAlone();
  sink.server.close();
  echo.server.close();
}

/** The metrics' own work, measured directly: per session, and per scrape against live sessions. */
async function metricsAlone() {
  const { ProxyMetrics } = await import("../dist/metrics/proxy-metrics.js");
  const perSession = [];
  for (let round = 0; round < 5; round++) {
    const m = new ProxyMetrics({ defaultMetrics: false });
    const n = 200_000;
    const t = performance.now();
    for (let i = 0; i < n; i++) {
      m.hooks.clientAccepted("bulk");
      m.hooks.upstreamConnected("bulk", "ok", 0.4, undefined);
      m.hooks.sessionClosed({
        sessionId: `s-${i}`,
        listener: "bulk",
        client: "127.0.0.1:1",
        upstream: "127.0.0.1:2",
        reason: "client_eof",
        side: "client",
        clean: true,
        errno: undefined,
        bytesFromClient: 1000,
        bytesFromUpstream: 2000,
        durationMs: 1234,
      });
    }
    perSession.push(((performance.now() - t) * 1000) / n);
  }
  console.log(`\nmetrics alone: ${median(perSession).toFixed(2)} µs of hooks per session (accept + connect + close; median of 5 × 200000)`);
  for (const live of [0, 1000, 10_000]) {
    const sessions = Array.from({ length: live }, (_, i) => ({
      id: `s-${i}`,
      listener: "bulk",
      client: { bytesRead: 0 },
      upstreamSocket: { bytesRead: 0 },
    }));
    const m = new ProxyMetrics();
    m.observe({ isDraining: false, currentConfig: { listeners: [{ name: "bulk" }] }, listeners: new Map([["bulk", { isAccepting: true }]]), sessions: () => sessions });
    const times = [];
    for (let i = 0; i < 21; i++) {
      // Every session read more since the last scrape: the worst case for the live byte count.
      for (const x of sessions) {
        x.client.bytesRead += 100;
        x.upstreamSocket.bytesRead += 100;
      }
      const t = performance.now();
      await m.scrape();
      times.push(performance.now() - t);
    }
    console.log(`metrics alone: scrape with ${String(live).padStart(5)} live sessions ${median(times).toFixed(2)} ms (median of 21, default metrics included)`);
  }
}

function format(r) {
  const parts = [
    `bulk ${r.mibPerS.toFixed(0)} MiB/s (${r.cpuMsPerGiB.toFixed(0)} ms CPU/GiB)`,
    `churn ${r.sessionsPerS.toFixed(0)} sessions/s (${r.cpuUsPerSession.toFixed(0)} µs CPU/session)`,
  ];
  if (r.scrapeMs !== undefined) parts.push(`scrape ${r.scrapeMs.toFixed(2)} ms with ${r.live} live`);
  return parts.join(", ");
}

async function serve(onConnection) {
  const sockets = new Set();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    onConnection(s);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, port: server.address().port, sockets };
}

async function startChild(variant, sink, echo) {
  const child = fork(new URL(import.meta.url).pathname, ["--proxy-child", variant, String(sink.port), String(echo.port)], { stdio: "inherit" });
  // A child that dies must end the run, not leave it waiting for a reply.
  child.once("exit", (code, signal) => {
    if (code !== 0) fail(`the proxy child (metrics ${variant}) exited with ${code ?? signal}`);
  });
  const [first] = await within(once(child, "message"), 30_000, "the proxy child to start");
  const ask = async (cmd) => {
    child.send({ cmd });
    const [reply] = await within(once(child, "message"), 60_000, `the proxy child to answer ${cmd}`);
    return reply;
  };
  return {
    ports: first.ports,
    cpu: async () => (await ask("cpu")).cpu,
    scrape: () => ask("scrape"),
    stop: async () => {
      child.send({ cmd: "stop" });
      await once(child, "exit");
    },
  };
}

/** Rejects when `promise` takes longer than `ms`: a bench must end, with the step that stalled. */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function fail(message) {
  process.stderr.write(`metrics-cost: ${message}\n`);
  process.exit(1);
}

function cpuMs(a, b) {
  return (b.user - a.user + (b.system - a.system)) / 1000;
}

/** Streams `mib` MiB over 4 sessions to the sink; resolves with the elapsed ms once all four closed. */
async function bulk(port, mib) {
  const chunk = Buffer.alloc(256 * 1024, 7);
  const perSession = Math.floor((mib * MiB) / 4 / chunk.length);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      const s = net.connect({ host: "127.0.0.1", port });
      await once(s, "connect");
      for (let i = 0; i < perSession; i++) if (!s.write(chunk)) await once(s, "drain");
      s.end();
      s.resume();
      await once(s, "close");
    }),
  );
  return performance.now() - started;
}

/** Runs `total` short sessions, 32 at a time; resolves with the elapsed ms. */
async function churn(port, total) {
  const payload = Buffer.alloc(64, 1);
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < total) {
      next++;
      const s = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true });
      s.on("error", () => {});
      await once(s, "connect");
      s.write(payload);
      let got = 0;
      for await (const data of s) {
        got += data.length;
        if (got >= payload.length) break;
      }
      s.destroy();
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  return performance.now() - started;
}

/** Opens `n` idle sessions through the churn listener, times a scrape, closes them. */
async function scrapeWithLiveSessions(child, n) {
  const sockets = [];
  for (let i = 0; i < n; i++) {
    const s = net.connect({ host: "127.0.0.1", port: child.ports.churn });
    sockets.push(s);
    await once(s, "connect");
    s.write("x");
  }
  // once() rejects on 'error': a session reset here ends the run with the reason.
  for (const s of sockets) if (s.bytesRead === 0) await once(s, "data");
  const { scrapeMs, bytes, live } = await child.scrape();
  for (const s of sockets) s.destroy();
  return { scrapeMs, scrapeBytes: bytes, live };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
