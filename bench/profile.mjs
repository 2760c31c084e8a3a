#!/usr/bin/env node
// Where keepalive-proxy spends its CPU under one benchmark scenario: runs the
// proxy (as the CLI runs it, default config) with node --cpu-prof behind the
// kpbench load, then summarises the profile by function (self and total time)
// and by area (Node streams, net, logging, metrics, GC, ...).
//
//   bash bench/run.sh profile [--scenario rr50|cps|bulk-up|bulk-down] [--duration 8] [-- extra proxy flags]
//
// Then, unless --compare "" is given, runs HAProxy and keepalive-proxy (entries
// of targets.mjs) under the same load without the profiler and compares what
// each costs per unit of work: user and system CPU from /proc/PID/stat and,
// where `perf` works, syscalls by name and context switches (perf stat).
//
// Writes bench/results/profiles/<scenario>.cpuprofile (open it in Chrome
// DevTools → Performance, or speedscope, for a flame graph) and prints the
// summary, also kept in bench/results/profiles/<scenario>.md.

import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { freePort } from "./ports.mjs";
import { cliFlags, missingRequirement, targets } from "./targets.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const kpbench = path.join(here, ".build/kpbench");

const { values: opts, positionals } = parseArgs({
  options: {
    scenario: { type: "string", default: "rr50" },
    duration: { type: "string", default: "8" },
    interval: { type: "string", default: "250" },
    top: { type: "string", default: "25" },
    compare: { type: "string", default: "haproxy,kp" },
  },
  allowPositionals: true,
});
const duration = Number(opts.duration);
const loads = {
  rr50: ["rr", "--conns", "50", "--size", "64", "--warmup", "0.5"],
  rr1: ["rr", "--conns", "1", "--size", "64", "--warmup", "0.5"],
  cps: ["cps", "--parallel", "32"],
  "bulk-up": ["bulk", "--dir", "up"],
  "bulk-down": ["bulk", "--dir", "down"],
};
const load = loads[opts.scenario];
if (!load) throw new Error(`--scenario is one of ${Object.keys(loads).join(", ")}`);

const children = [];
process.on("exit", () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(130));

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitForListen(port) {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  for (let i = 0; i < 400; i++) {
    const table = fs.readFileSync("/proc/net/tcp", "utf8");
    if (table.split("\n").some((l) => l.trim().split(/\s+/)[1]?.endsWith(hex) && l.trim().split(/\s+/)[3] === "0A")) return;
    await sleep(25);
  }
  throw new Error(`nothing listens on ${port}`);
}

/** Waits (at most 15 s) for the proxy's /readyz to answer 200: with workers, every one listens then. */
async function waitForReady(port) {
  for (let i = 0; i < 300; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not up yet
    }
    await sleep(50);
  }
  throw new Error(`/readyz on ${port} never answered 200`);
}

function run(cmd, args, stdio = "inherit") {
  const child = spawn(cmd, args, { stdio });
  children.push(child);
  child.done = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  return child;
}

const outDir = path.join(here, "results", "profiles");
fs.mkdirSync(outDir, { recursive: true });
const profDir = fs.mkdtempSync(path.join(outDir, ".tmp-"));
const upstreamPort = await freePort();
const listenPort = await freePort();
const adminPort = await freePort();
const server = run(kpbench, ["server", "--port", String(upstreamPort)]);
await waitForListen(upstreamPort);
const logFd = fs.openSync("/dev/null", "w");
// With workers, one process carries the traffic of a connection: profile one
// worker (--workers 1) unless told otherwise. The supervisor writes a profile
// of its own too; the busiest one is kept (below).
const flags = cliFlags(root);
const workerArgs = flags.has("--workers") && !positionals.some((a) => a.startsWith("--workers")) ? ["--workers", "1"] : [];
const proxy = run(
  process.execPath,
  [
    "--cpu-prof",
    `--cpu-prof-dir=${profDir}`,
    `--cpu-prof-interval=${opts.interval}`,
    path.join(root, "dist/cli.js"),
    "--listen",
    `127.0.0.1:${listenPort}`,
    "--upstream",
    `127.0.0.1:${upstreamPort}`,
    "--admin",
    `127.0.0.1:${adminPort}`,
    ...workerArgs,
    ...positionals,
  ],
  ["ignore", logFd, "inherit"],
);
await waitForListen(listenPort);
await waitForReady(adminPort);
// V8 stamps profile samples with CLOCK_MONOTONIC µs, as process.hrtime reads
// it; samples before this instant are the proxy's startup and are left out.
const loadStartUs = Number(process.hrtime.bigint() / 1000n);
const loadgen = run(kpbench, [...load, "--duration", String(duration), "--port", String(listenPort)], ["ignore", "pipe", "inherit"]);
let result = "";
loadgen.stdout.on("data", (c) => {
  result += c;
});
await loadgen.done;
proxy.kill("SIGTERM");
await proxy.done;
// One .cpuprofile per process (a supervisor and its workers each write one):
// the largest holds the most samples, the worker that carried the load.
const file = fs
  .readdirSync(profDir)
  .filter((f) => f.endsWith(".cpuprofile"))
  .sort((a, b) => fs.statSync(path.join(profDir, b)).size - fs.statSync(path.join(profDir, a)).size)[0];
if (!file) throw new Error("the proxy wrote no .cpuprofile (did it exit cleanly on SIGTERM?)");
const target = path.join(outDir, `${opts.scenario}.cpuprofile`);
fs.renameSync(path.join(profDir, file), target);
fs.rmSync(profDir, { recursive: true, force: true });

const summary = summarise(JSON.parse(fs.readFileSync(target, "utf8")), Number(opts.top), loadStartUs);
const comparison = opts.compare ? await compare(opts.compare.split(",")) : "";
const text = [
  `# keepalive-proxy CPU profile: ${opts.scenario}`,
  "",
  `\`node --cpu-prof\` (sampling every ${opts.interval} µs) on the proxy in its default configuration (log level info, to /dev/null) for ${duration} s of \`kpbench ${load.join(" ")}\`${[...workerArgs, ...positionals].length ? `, proxy flags: \`${[...workerArgs, ...positionals].join(" ")}\`` : ""}. Load generator result: \`${result.trim()}\``,
  "",
  summary,
  comparison,
].join("\n");
fs.writeFileSync(path.join(outDir, `${opts.scenario}.md`), `${text}\n`);
console.log(text);
console.log(`\nprofile: ${path.relative(root, target)}`);
server.kill("SIGTERM");

/** Self and total time by function, and self time by area, from a .cpuprofile. */
function summarise(profile, top, fromUs) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const keyOf = (n) => {
    const f = n.callFrame;
    const name = f.functionName || "(anonymous)";
    if (!f.url) return name;
    const url = f.url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, "$1/").replace(/^file:\/\/.*\/bench\//, "bench/");
    return `${name}  ${url}:${f.lineNumber + 1}`;
  };
  const self = new Map();
  const total = new Map();
  const areas = new Map();
  let busy = 0;
  let idle = 0;
  let skipped = 0;
  // Only when the clocks agree (the cut falls inside the profile) is startup cut off.
  const cut = fromUs > profile.startTime && fromUs < profile.endTime ? fromUs : profile.startTime;
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    const dt = profile.timeDeltas[i + 1] ?? 0;
    const leaf = byId.get(profile.samples[i]);
    if (t < cut) {
      skipped += dt;
      continue;
    }
    if (leaf.callFrame.functionName === "(idle)") {
      idle += dt;
      continue;
    }
    busy += dt;
    const k = keyOf(leaf);
    self.set(k, (self.get(k) ?? 0) + dt);
    const area = areaOf(leaf);
    areas.set(area, (areas.get(area) ?? 0) + dt);
    const seen = new Set();
    for (let id = leaf.id; id !== undefined; id = parent.get(id)) {
      const key = keyOf(byId.get(id));
      if (seen.has(key)) continue;
      seen.add(key);
      total.set(key, (total.get(key) ?? 0) + dt);
    }
  }
  const pct = (x) => `${((100 * x) / busy).toFixed(1)} %`;
  const rows = (map, n) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, v]) => `| ${pct(v)} | \`${k.replace(/\|/g, "\\|")}\` |`);
  return [
    `Under load: busy ${(busy / 1e6).toFixed(2)} s, idle ${(idle / 1e6).toFixed(2)} s; percentages are of busy time. V8 counts libuv's poll phase as idle, and that is where reads (and the page faults of fresh read buffers) happen, so for bulk transfers the per-unit table below is the better guide. ${cut > profile.startTime ? `The first ${(skipped / 1e6).toFixed(2)} s (startup, before the load began) are left out.` : "Startup could not be told apart and is included."}`,
    "",
    "## Self time by area",
    "",
    "| self | area |",
    "|---:|---|",
    ...rows(areas, 20),
    "",
    `## Self time, top ${top} functions`,
    "",
    "| self | function |",
    "|---:|---|",
    ...rows(self, top),
    "",
    `## Total (inclusive) time, top ${top} functions`,
    "",
    "| total | function |",
    "|---:|---|",
    ...rows(total, top).filter((r) => !r.includes("(root)")),
    "",
  ].join("\n");
}

/** A coarse label for where a sampled frame lives. */
function areaOf(node) {
  const f = node.callFrame;
  const url = f.url ?? "";
  if (f.functionName === "(garbage collector)") return "garbage collector";
  if (f.functionName === "(program)") return "V8/libuv outside JS (program)";
  if (!url) return `native: ${f.functionName || "(anonymous)"}`;
  if (url.includes("/dist/")) return `keepalive-proxy ${url.replace(/.*\/dist\//, "dist/")}`;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return `package ${pkg[1]}`;
  if (url.startsWith("node:")) return url.replace(/^node:internal\//, "node:internal/").replace(/\/[^/]+$/, (m) => m);
  return url;
}

/** Runs each named target under the same load, without the profiler, and tabulates its cost per unit of work. */
async function compare(names) {
  const events = ["task-clock", "context-switches", "page-faults", "raw_syscalls:sys_enter"];
  const calls = ["read", "recvfrom", "readv", "write", "sendto", "writev", "sendmsg", "recvmsg", "splice", "epoll_wait", "epoll_pwait", "epoll_ctl", "futex", "mmap", "munmap", "madvise"];
  for (const c of calls) events.push(`syscalls:sys_enter_${c}`);
  const perfOk = spawnOk("perf", ["stat", "-e", events.join(","), "--", "true"]);
  const columns = [];
  for (const name of names) {
    const entry = targets.find((t) => t.name === name);
    if (!entry?.start) throw new Error(`--compare: no proxy target named ${name}`);
    const missing = missingRequirement(entry, flags);
    if (missing) {
      console.error(`--compare: skipping ${name} (${entry.label}): ${missing}`);
      continue;
    }
    const dir = fs.mkdtempSync(path.join(outDir, ".tmp-"));
    const ctx = { listenPort: await freePort(), upstreamPort, adminPort: await freePort(), dir, root, node: process.execPath, idleConns: 1000, fdLimit: 20000 };
    const spec = entry.start(ctx);
    for (const [f, text] of Object.entries(spec.files ?? {})) fs.writeFileSync(path.join(dir, f), text);
    const out = fs.openSync("/dev/null", "w");
    const child = spawn(spec.cmd, spec.args, { stdio: ["ignore", out, "ignore"], detached: true });
    children.push(child);
    const exited = new Promise((resolve) => child.once("exit", resolve));
    await waitForListen(ctx.listenPort);
    if (entry.ready) for (let i = 0; i < 300 && !(await entry.ready(ctx)); i++) await sleep(50);
    await sleep(300);
    const pids = groupPids(child.pid);
    const cpu0 = cpuOf(pids);
    const loadArgs = [...load, "--duration", String(duration), "--port", String(ctx.listenPort)];
    const perfFile = path.join(dir, "perf.csv");
    const cmd = perfOk ? "perf" : kpbench;
    const args = perfOk ? ["stat", "-x", ",", "-o", perfFile, "-e", events.join(","), "-p", pids.join(","), "--", kpbench, ...loadArgs] : loadArgs;
    const lg = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"] });
    let text = "";
    lg.stdout.on("data", (c) => {
      text += c;
    });
    await new Promise((resolve) => lg.once("exit", resolve));
    const cpu1 = cpuOf(pids);
    const result = JSON.parse(text.trim().split("\n").at(-1));
    const [units, unit] = result.mode === "rr" ? [result.allTransactions, "transaction"] : result.mode === "cps" ? [result.connections, "connection"] : [result.bytes / 1e6, "MB"];
    const counts = perfOk ? parsePerf(fs.readFileSync(perfFile, "utf8")) : {};
    process.kill(-child.pid, "SIGTERM");
    await Promise.race([exited, sleep(3000)]);
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {}
    fs.rmSync(dir, { recursive: true, force: true });
    columns.push({ name: entry.label, result, units, unit, user: cpu1.user - cpu0.user, sys: cpu1.sys - cpu0.sys, counts });
  }
  const unit = columns[0]?.unit ?? "unit";
  const rows = [
    ["throughput", (c) => (c.result.mode === "rr" ? `${Math.round(c.result.tps)} tx/s` : c.result.mode === "cps" ? `${Math.round(c.result.cps)} conn/s` : `${Math.round(c.result.mbps)} MB/s`)],
    [`user CPU µs per ${unit}`, (c) => ((c.user * 1e6) / c.units).toFixed(2)],
    [`system CPU µs per ${unit}`, (c) => ((c.sys * 1e6) / c.units).toFixed(2)],
  ];
  if (perfOk) {
    rows.push([`context switches per ${unit}`, (c) => (c.counts["context-switches"] / c.units).toFixed(3)]);
    rows.push([`page faults per ${unit}`, (c) => (c.counts["page-faults"] / c.units).toFixed(3)]);
    rows.push([`syscalls per ${unit}`, (c) => (c.counts["raw_syscalls:sys_enter"] / c.units).toFixed(2)]);
    for (const call of calls) {
      const key = `syscalls:sys_enter_${call}`;
      if (columns.every((c) => !c.counts[key])) continue;
      rows.push([`  ${call} per ${unit}`, (c) => ((c.counts[key] ?? 0) / c.units).toFixed(3)]);
    }
  }
  return [
    "## Cost per unit of work, without the profiler",
    "",
    `The same load, ${duration} s, each target on its own (the load generator and the upstream server share the machine with it). CPU from /proc/PID/stat (1/100 s ticks); ${perfOk ? "syscalls and context switches from `perf stat -p` on the proxy's processes" : "`perf` is not usable here, so no syscall counts"}.`,
    "",
    `| | ${columns.map((c) => c.name).join(" | ")} |`,
    `|---|${columns.map(() => "---:").join("|")}|`,
    ...rows.map(([label, fn]) => `| ${label} | ${columns.map(fn).join(" | ")} |`),
    "",
  ].join("\n");
}

function spawnOk(cmd, args) {
  try {
    const r = spawnSync(cmd, args, { stdio: "ignore" });
    return r.status === 0;
  } catch {
    return false;
  }
}

function parsePerf(csv) {
  const counts = {};
  for (const line of csv.split("\n")) {
    const f = line.split(",");
    if (f.length < 3 || line.startsWith("#")) continue;
    const value = Number(f[0]);
    if (!Number.isNaN(value)) counts[f[2]] = value;
  }
  return counts;
}

function groupPids(pgid) {
  const pids = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (entry.charCodeAt(0) > 57) continue;
    try {
      const text = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
      if (Number(f[2]) === pgid) pids.push(Number(entry));
    } catch {}
  }
  return pids;
}

function cpuOf(pids) {
  let user = 0;
  let sys = 0;
  for (const pid of pids) {
    try {
      const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
      user += Number(f[11]);
      sys += Number(f[12]);
    } catch {}
  }
  return { user: user / 100, sys: sys / 100 };
}
