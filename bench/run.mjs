#!/usr/bin/env node
// The benchmark: every target of targets.mjs through every scenario below,
// with the load generator and the upstream server of kpbench.c. Started by
// bench/run.sh (which installs and builds what this needs); see bench/README.md.
//
//   node bench/run.mjs [--quick] [--rounds N] [--duration S] [--targets a,b] [--scenarios a,b]
//                      [--idle-conns N] [--tls-idle-conns N] [--out FILE] [--report FILE]
//                      [--report-only [--readme]] [--keep-logs]
//                      [--skip-readme]
//
// A full run (no --quick, --targets or --scenarios) also rewrites the summary
// between README.md's <!-- bench:targets:start/end --> markers.
//
// Method, for a shared, noisy 2-core machine: each round runs every scenario
// on every target, targets in an order rotated by one each round; every
// figure is reported as the median over rounds with its min–max, and as a
// ratio to the direct connection measured in the same round. The proxy's CPU
// time comes from /proc/PID/stat of its whole process tree (group and descendants), its memory from
// /proc/PID/status (VmRSS) and /proc/PID/smaps_rollup (Pss).

import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { renderReadmeSummary, renderReport } from "./report.mjs";
import { freePort } from "./ports.mjs";
import { chooseTargets, cliFlags } from "./targets.mjs";
import { makeBenchCertificate } from "./tls-cert.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
const kpbench = path.join(here, ".build/kpbench");
const CLK_TCK = 100; // USER_HZ: /proc/PID/stat counts CPU time in 1/100 s on Linux

const { values: opts } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    rounds: { type: "string" },
    duration: { type: "string" },
    targets: { type: "string" },
    scenarios: { type: "string" },
    "idle-conns": { type: "string" },
    "tls-idle-conns": { type: "string" },
    out: { type: "string" },
    report: { type: "string" },
    "report-only": { type: "boolean", default: false },
    "keep-logs": { type: "boolean", default: false },
    readme: { type: "boolean", default: false },
    "skip-readme": { type: "boolean", default: false },
  },
});

const rounds = Number(opts.rounds ?? (opts.quick ? 1 : 5));
const duration = Number(opts.duration ?? (opts.quick ? 1 : 2));
const warmup = opts.quick ? 0.2 : 0.4; // request/response only: not counted, lets a JIT settle
const settleS = opts.quick ? 0.5 : 1; // between opening the idle connections and reading RSS
const outFile = opts.out ?? path.join(here, "results", opts.quick ? "quick.json" : "latest.json");
const reportFile = opts.report ?? (opts.quick ? path.join(here, "results", "quick.md") : path.join(here, "RESULTS.md"));

/**
 * The scenarios in the order each round runs them; `args` are kpbench's. A
 * `tls` scenario runs on the targets that declare `tls` (and gets the run's
 * CA as --tls-ca), a plaintext one on the others; `idle` ones get a freshly
 * started target each.
 */
const scenarios = [
  { name: "rr1", args: () => ["rr", "--conns", "1", "--size", "64", "--duration", String(duration), "--warmup", String(warmup)] },
  { name: "rr50", args: () => ["rr", "--conns", "50", "--size", "64", "--duration", String(duration), "--warmup", String(warmup)] },
  { name: "cps", args: () => ["cps", "--parallel", "32", "--duration", String(duration)] },
  { name: "bulk-up", args: () => ["bulk", "--dir", "up", "--duration", String(duration)] },
  { name: "bulk-down", args: () => ["bulk", "--dir", "down", "--duration", String(duration)] },
  { name: "idle", idle: true },
  { name: "tls-cps", tls: true, args: () => ["cps", "--parallel", "32", "--duration", String(duration)] },
  { name: "tls-bulk-up", tls: true, args: () => ["bulk", "--dir", "up", "--duration", String(duration)] },
  { name: "tls-bulk-down", tls: true, args: () => ["bulk", "--dir", "down", "--duration", String(duration)] },
  // Fewer connections than plaintext idle: each costs a full handshake to
  // open, and stunnel holds a thread per connection.
  { name: "tls-idle", tls: true, idle: true },
];

/** Whether scenario runs on target: TLS scenarios on TLS targets, plaintext ones on the rest. */
const runsOn = (scenario, target) => Boolean(scenario.tls) === Boolean(target.tls);

/** kpbench's --tls-ca for a TLS scenario, nothing for a plaintext one. */
const tlsArgs = (scenario, env) => (scenario.tls ? ["--tls-ca", env.tls.ca] : []);

if (opts["report-only"]) {
  const data = JSON.parse(fs.readFileSync(outFile, "utf8"));
  fs.writeFileSync(reportFile, renderReport(data));
  console.log(`wrote ${path.relative(root, reportFile)} from ${path.relative(root, outFile)}`);
  if (opts.readme) updateReadme(data);
  process.exit(0);
}

// ------------------------------------------------------------ processes

/** Process groups we started; every one is killed on the way out, whatever the way. */
const groups = new Set();
process.on("exit", () => {
  for (const pgid of groups) killGroup(pgid, "SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => process.exit(130));

function killGroup(pgid, signal) {
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}

function killPid(pid, signal) {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Starts cmd in a process group of its own, output appended to logFile. */
function spawnGroup(cmd, args, logFile, env = undefined) {
  const fd = fs.openSync(logFile, "a");
  const child = spawn(cmd, args, { detached: true, stdio: ["ignore", fd, fd], env: env ? { ...process.env, ...env } : process.env });
  fs.closeSync(fd);
  groups.add(child.pid);
  child.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  child.once("error", (error) => fs.appendFileSync(logFile, `spawn failed: ${error.message}\n`));
  return child;
}

/** SIGTERM to the group, SIGKILL after a grace period, then waits until no live process of it is left. */
async function stopGroup(child) {
  // Descendants that left the group are listed now: once the leader is gone
  // they are re-parented and can no longer be found through it.
  const members = groupPids(child.pid, { live: true });
  killGroup(child.pid, "SIGTERM");
  await Promise.race([child.exited, sleep(3000)]);
  killGroup(child.pid, "SIGKILL");
  for (const pid of members) killPid(pid, "SIGKILL");
  // Zombies are dead already (their parent, or init, reaps them); thousands of
  // socat children can take a while to tear their sockets down.
  try {
    await pollUntil(() => groupPids(child.pid, { live: true }).length === 0, 120_000, `process group ${child.pid} to exit`);
  } catch (error) {
    process.stderr.write(`warning: ${error.message}\n`);
  }
  groups.delete(child.pid);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function pollUntil(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** Fields of /proc/PID/stat after the command name (which may hold spaces): [0] is the state. */
function statFields(pid) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return text.slice(text.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/**
 * Pids of a target: its process group pgid, plus every descendant of the
 * leader even if it moved to a group of its own (a supervisor may start
 * workers detached); with `live`, zombies left out.
 */
function groupPids(pgid, { live = false } = {}) {
  const procs = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (entry.charCodeAt(0) > 57) continue; // not a pid
    const f = statFields(entry);
    if (f) procs.push({ pid: Number(entry), state: f[0], ppid: Number(f[1]), pgid: Number(f[2]) });
  }
  const members = new Set(procs.filter((p) => p.pgid === pgid).map((p) => p.pid));
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of procs) {
      if (!members.has(p.pid) && members.has(p.ppid)) {
        members.add(p.pid);
        grew = true;
      }
    }
  }
  return procs.filter((p) => members.has(p.pid) && !(live && p.state === "Z")).map((p) => p.pid);
}

/**
 * CPU seconds used by a process group so far: utime+stime of every live
 * member, plus what reaped children left in the leader's cutime+cstime
 * (socat's per-connection children end that way).
 */
function groupCpuSeconds(pgid) {
  const { user, sys } = groupCpu(pgid);
  return user + sys;
}

/** groupCpuSeconds split into user and system time. */
function groupCpu(pgid) {
  let user = 0;
  let sys = 0;
  for (const pid of groupPids(pgid)) {
    const f = statFields(pid);
    if (!f) continue;
    user += Number(f[11]);
    sys += Number(f[12]);
    if (pid === pgid) {
      user += Number(f[13]);
      sys += Number(f[14]);
    }
  }
  return { user: user / CLK_TCK, sys: sys / CLK_TCK };
}

/**
 * Resident memory of a target in KiB, summed over all its processes (a
 * supervisor and its workers, nginx's master and workers): VmRSS summed
 * (shared pages counted per process) and Pss summed; with `perProcess`, each
 * process's own figures too (up to 16; socat has thousands).
 */
function groupMemoryKiB(pgid, { perProcess = false } = {}) {
  let rss = 0;
  let pss = 0;
  const each = [];
  const pids = groupPids(pgid, { live: true });
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
      const p = /^Pss:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
      if (m) rss += Number(m[1]);
      if (p) pss += Number(p[1]);
      if (perProcess && each.length < 16) each.push({ pid, leader: pid === pgid, rssKiB: Number(m?.[1] ?? 0), pssKiB: Number(p?.[1] ?? 0) });
    } catch {
      // exited between the listing and the read
    }
  }
  return { rssKiB: rss, pssKiB: pss, processes: pids.length, ...(perProcess ? { perProcess: each } : {}) };
}

/**
 * Waits until the target's count of live processes has not changed for
 * 400 ms (nginx forks its workers after it listens; a supervisor may fork its
 * workers one by one), at most 10 s; returns that count.
 */
async function settleProcesses(pgid) {
  const deadline = Date.now() + 10_000;
  let count = groupPids(pgid, { live: true }).length;
  let since = Date.now();
  while (Date.now() - since < 400 && Date.now() < deadline) {
    await sleep(50);
    const now = groupPids(pgid, { live: true }).length;
    if (now !== count) {
      count = now;
      since = Date.now();
    }
  }
  return count;
}

/** Whether something listens on 127.0.0.1:port, from /proc/net/tcp (no connection made, so no session logged). */
function listening(port) {
  return listeningSockets(port) > 0;
}

/**
 * How many sockets listen on port: one per worker with SO_REUSEPORT, one in
 * all for a socket shared by every process or thread (nginx, HAProxy 2.6).
 */
function listeningSockets(port) {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return fs
    .readFileSync("/proc/net/tcp", "utf8")
    .split("\n")
    .filter((line) => {
      const f = line.trim().split(/\s+/);
      return f[1]?.endsWith(hex) && f[3] === "0A";
    }).length;
}

/**
 * CPU ticks (own plus reaped children) of every process that is not the
 * benchmark's, by pid, with its name: what other work ran on the machine.
 */
function foreignCpu() {
  const ours = new Set([...groups, Number(statFields(process.pid)[2])]);
  const out = new Map();
  for (const entry of fs.readdirSync("/proc")) {
    if (entry.charCodeAt(0) > 57) continue;
    let text;
    try {
      text = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    if (ours.has(Number(f[2])) || Number(f[1]) === process.pid) continue;
    const name = text.slice(text.indexOf("(") + 1, text.lastIndexOf(")"));
    // Init reaps orphans, ours among them (socat children outlive a killed
    // parent), so only its own time counts, not its children's.
    const reaped = entry === "1" ? 0 : Number(f[13]) + Number(f[14]);
    out.set(entry, { name, ticks: Number(f[11]) + Number(f[12]) + reaped });
  }
  return out;
}

/** CPU seconds other processes used between two foreignCpu snapshots, and the top users by name. */
function foreignDelta(before, after) {
  const byName = new Map();
  let total = 0;
  for (const [pid, { name, ticks }] of after) {
    const d = ticks - (before.get(pid)?.ticks ?? 0);
    if (d <= 0) continue;
    total += d;
    byName.set(name, (byName.get(name) ?? 0) + d);
  }
  const top = [...byName].sort((x, y) => y[1] - x[1]).slice(0, 3).map(([name, t]) => ({ name, cpuS: t / CLK_TCK }));
  return { cpuS: total / CLK_TCK, top };
}

// ------------------------------------------------------------ load generator

/** Runs kpbench with args and returns its JSON lines; onLine may answer on its stdin. */
function runLoad(args, { timeoutMs, onLine } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(kpbench, args, { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    const lines = [];
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`kpbench ${args.join(" ")} took longer than ${timeoutMs} ms`));
    }, timeoutMs);
    child.stdout.on("data", (chunk) => {
      out += chunk;
      let nl;
      while ((nl = out.indexOf("\n")) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        if (!line.trim()) continue;
        const parsed = JSON.parse(line);
        lines.push(parsed);
        if (onLine) Promise.resolve(onLine(parsed, child)).catch((e) => child.kill("SIGKILL") && reject(e));
      }
    });
    child.stderr.on("data", (chunk) => {
      err += chunk;
    });
    child.stdin.on("error", () => {});
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`kpbench ${args.join(" ")} exited ${code}: ${err.trim()}`));
      else resolve(lines);
    });
  });
}

// ------------------------------------------------------------ targets

class RunningTarget {
  constructor(target, ctx, child) {
    this.target = target;
    this.ctx = ctx;
    this.child = child;
  }

  get port() {
    return this.ctx.listenPort;
  }

  get pgid() {
    return this.child?.pid;
  }

  /** CPU seconds of the target's process group so far, total; undefined for direct. */
  cpu() {
    return this.child ? groupCpuSeconds(this.child.pid) : undefined;
  }

  cpuSplit() {
    return this.child ? groupCpu(this.child.pid) : undefined;
  }

  async stop() {
    if (this.child) await stopGroup(this.child);
  }
}

async function startTarget(target, env) {
  if (!target.start) return new RunningTarget(target, { listenPort: env.upstreamPort }, undefined);
  const dir = fs.mkdtempSync(path.join(env.workDir, `${target.name}-`));
  const ctx = {
    listenPort: await freePort(),
    upstreamPort: env.upstreamPort,
    adminPort: await freePort(),
    dir,
    root,
    node: process.execPath,
    idleConns: env.idleConns,
    fdLimit: env.fdLimit,
    tls: env.tls,
  };
  const spec = target.start(ctx);
  for (const [name, text] of Object.entries(spec.files ?? {})) fs.writeFileSync(path.join(dir, name), text);
  const logFile = path.join(dir, "output.log");
  const child = spawnGroup(spec.cmd, spec.args, logFile, spec.env);
  let processes;
  try {
    await pollUntil(() => listening(ctx.listenPort), 15_000, `${target.name} to listen on ${ctx.listenPort}`);
    if (target.ready) await pollUntil(() => target.ready(ctx), 15_000, `${target.name} to be ready`);
    processes = await settleProcesses(child.pid);
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${target.name} exited right after it listened`);
  } catch (error) {
    await stopGroup(child);
    const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8").slice(-2000) : "";
    throw new Error(`${error.message}\n${log}`);
  }
  const running = new RunningTarget(target, ctx, child);
  running.processes = processes;
  running.listenSockets = listeningSockets(ctx.listenPort);
  return running;
}

// ------------------------------------------------------------ measurements

async function measure(running, scenario, env) {
  const server0 = groupCpuSeconds(env.server.pid);
  const cpu0 = running.cpuSplit();
  const t0 = performance.now();
  const [result] = await runLoad([...scenario.args(), ...tlsArgs(scenario, env), "--port", String(running.port)], {
    timeoutMs: (duration + warmup) * 1000 + 60_000,
  });
  const wallS = (performance.now() - t0) / 1000;
  // Let a proxy finish closing what the load generator closed before its CPU is read.
  await sleep(50);
  const cpu1 = running.cpuSplit();
  return {
    wallS,
    processes: running.pgid ? groupPids(running.pgid, { live: true }).length : null,
    listenSockets: running.pgid ? running.listenSockets : null,
    proxyCpuS: cpu0 === undefined ? null : cpu1.user + cpu1.sys - cpu0.user - cpu0.sys,
    proxyUserS: cpu0 === undefined ? null : cpu1.user - cpu0.user,
    proxySysS: cpu0 === undefined ? null : cpu1.sys - cpu0.sys,
    serverCpuS: groupCpuSeconds(env.server.pid) - server0,
    load: result,
  };
}

/** Opens idle connections through a freshly started target, reads its memory, then checks every one. */
async function measureIdle(running, scenario, env) {
  await sleep(settleS * 300);
  const before = running.pgid ? groupMemoryKiB(running.pgid, { perProcess: true }) : null;
  const cpu0 = running.cpu();
  let after = null;
  let cpuOpen = null;
  const conns = Math.min(scenario.tls ? env.tlsIdleConns : env.idleConns, running.target.idleConns ?? Number.POSITIVE_INFINITY);
  const lines = await runLoad(["idle", ...tlsArgs(scenario, env), "--port", String(running.port), "--conns", String(conns), "--parallel", "256"], {
    timeoutMs: 180_000,
    onLine: async (line, child) => {
      if (line.phase !== "opened") return;
      const cpu1 = running.cpu();
      cpuOpen = cpu0 === undefined ? null : cpu1 - cpu0;
      await sleep(settleS * 1000);
      after = running.pgid ? groupMemoryKiB(running.pgid, { perProcess: true }) : null;
      child.stdin.write("go\n");
    },
  });
  const opened = lines.find((l) => l.phase === "opened");
  const checked = lines.find((l) => l.phase === "checked");
  return { proxyCpuOpenS: cpuOpen, memoryBefore: before, memoryAfter: after, listenSockets: running.pgid ? running.listenSockets : null, opened, load: checked };
}

// ------------------------------------------------------------ machine and versions

function describeMachine() {
  const cpuModel = /model name\s*:\s*(.*)/.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown";
  return {
    nproc: os.availableParallelism?.() ?? os.cpus().length,
    cpuModel,
    kernel: os.release(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    versions: {
      node: process.version,
      keepaliveProxy: JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).version,
      haproxy: versionLine("haproxy", ["-v"], /HAProxy version \S+/),
      nginx: versionLine("nginx", ["-v"], /nginx\/\S+/),
      socat: versionLine("socat", ["-V"], /socat version \S+/),
      stunnel: versionLine("stunnel", ["-version"], /stunnel \S+/),
      openssl: versionLine("openssl", ["version"], /OpenSSL \S+/),
      gcc: versionLine("gcc", ["--version"], /gcc.*/),
    },
    gitCommit: versionLine("git", ["-C", root, "rev-parse", "--short", "HEAD"], /\S+/),
    srcModified: versionLine("git", ["-C", root, "status", "--porcelain", "--", "src"], /.+/) !== "unavailable",
  };
}

/** The first match of pattern in what cmd prints on stdout or stderr (nginx -v uses stderr). */
function versionLine(cmd, args, pattern) {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return pattern.exec(`${r.stdout ?? ""}\n${r.stderr ?? ""}`)?.[0]?.trim() ?? "unavailable";
}

function fdLimit() {
  const m = /Max open files\s+(\d+)/.exec(fs.readFileSync("/proc/self/limits", "utf8"));
  return m ? Number(m[1]) : 1024;
}

function loadavg() {
  return os.loadavg().map((x) => Math.round(x * 100) / 100);
}

// ------------------------------------------------------------ main

async function main() {
  if (!fs.existsSync(kpbench)) throw new Error(`${kpbench} is missing: run bench/run.sh, which compiles it`);
  // Targets that need a flag the build lacks (--workers before workers land)
  // are skipped with the reason printed and kept in the results.
  const flags = cliFlags(root);
  const { chosen: targets, skipped } = chooseTargets(opts.targets?.split(","), flags);
  for (const s of skipped) process.stderr.write(`kpbench: skipping ${s.name} (${s.label}): ${s.reason}\n`);
  for (const t of targets.filter((x) => x.standInFor)) process.stderr.write(`kpbench: measuring ${t.name} (${t.label}) in place of ${t.standInFor}\n`);
  const wantedScenarios = opts.scenarios ? new Set(opts.scenarios.split(",")) : undefined;
  const chosen = scenarios.filter((s) => !wantedScenarios || wantedScenarios.has(s.name));

  // A single-process proxy holds two fds per proxied connection; 10,000 needs
  // a limit above 20,000. Where the hard limit is lower (and root cannot raise
  // it), the count is reduced to what fits and the report says so.
  const limit = fdLimit();
  const idleConns = Number(opts["idle-conns"] ?? Math.min(10_000, Math.floor((limit - 100) / 2 / 100) * 100));
  const tlsIdleConns = Math.min(idleConns, Number(opts["tls-idle-conns"] ?? 2000));
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "kpbench-"));
  const upstreamPort = await freePort();
  const serverLog = path.join(workDir, "server.log");
  const server = spawnGroup(kpbench, ["server", "--port", String(upstreamPort)], serverLog);
  await pollUntil(() => listening(upstreamPort), 5000, "the upstream server");
  // One certificate for every TLS target of the run.
  const tls = targets.some((t) => t.tls) && chosen.some((s) => s.tls) ? makeBenchCertificate(path.join(workDir, "tls")) : undefined;
  const env = { workDir, upstreamPort, server, idleConns, tlsIdleConns, fdLimit: limit, tls };

  const machine = describeMachine();
  const data = {
    meta: {
      date: new Date().toISOString(),
      quick: opts.quick,
      rounds,
      durationS: duration,
      warmupS: warmup,
      idleConns,
      tlsIdleConns,
      fdLimit: limit,
      machine,
      loadavgStart: loadavg(),
      targets: targets.map(({ name, label, group, idleConns, note, standInFor, tls }) => ({ name, label, group, idleConns, note, standInFor, tls })),
      skipped,
      scenarios: chosen.map((s) => s.name),
    },
    rounds: [],
    runs: [],
  };
  const save = () => {
    fs.mkdirSync(path.dirname(outFile), { recursive: true });
    fs.writeFileSync(outFile, `${JSON.stringify(data, null, 1)}\n`);
  };
  const log = (msg) => process.stderr.write(`${msg}\n`);
  log(`kpbench: ${rounds} round(s), ${duration}s per measurement, ${targets.length} targets, ${idleConns} idle connections (fd limit ${limit}); load ${loadavg().join(" ")}`);
  const started = performance.now();

  for (let round = 0; round < rounds; round++) {
    const order = targets.map((_, i) => targets[(i + round) % targets.length]);
    const foreign0 = foreignCpu();
    const roundStart = performance.now();
    const roundInfo = { round, order: order.map((t) => t.name), loadavgStart: loadavg() };
    log(`round ${round + 1}/${rounds}: ${roundInfo.order.join(" ")}  (load ${roundInfo.loadavgStart.join(" ")})`);

    const timed = chosen.filter((s) => !s.idle);
    if (timed.length > 0) {
      // Every target is started once for the timed scenarios of the round and
      // stays up through them (idle, they cost nothing), so that the
      // scenarios can interleave across targets.
      const running = new Map();
      const startErrors = new Map();
      try {
        for (const t of order) {
          if (!timed.some((s) => runsOn(s, t))) continue;
          try {
            running.set(t.name, await startTarget(t, env));
          } catch (error) {
            startErrors.set(t.name, error.message);
            log(`  ${t.name} did not start: ${error.message.split("\n")[0]}`);
          }
        }
        for (const scenario of timed) {
          for (const [position, t] of order.entries()) {
            if (!runsOn(scenario, t)) continue;
            const run = { round, position, target: t.name, scenario: scenario.name, startedAt: new Date().toISOString() };
            try {
              if (startErrors.has(t.name)) throw new Error(`did not start: ${startErrors.get(t.name)}`);
              Object.assign(run, await measure(running.get(t.name), scenario, env));
              run.ok = true;
            } catch (error) {
              run.ok = false;
              run.error = error.message;
            }
            data.runs.push(run);
            log(`  ${scenario.name.padEnd(9)} ${t.name.padEnd(11)} ${summarise(run)}`);
            await sleep(100);
          }
        }
      } finally {
        for (const r of running.values()) await r.stop();
        for (const [name, r] of running) collectTargetLog(data, round, name, r.ctx.dir);
      }
    }

    for (const scenario of chosen.filter((s) => s.idle)) {
      // A fresh process per target, so that "before" is its memory at start.
      for (const [position, t] of order.entries()) {
        if (!runsOn(scenario, t)) continue;
        const run = { round, position, target: t.name, scenario: scenario.name, startedAt: new Date().toISOString() };
        let running;
        try {
          running = await startTarget(t, env);
          Object.assign(run, await measureIdle(running, scenario, env));
          run.ok = true;
        } catch (error) {
          run.ok = false;
          run.error = error.message;
        } finally {
          if (running) await running.stop();
        }
        data.runs.push(run);
        log(`  ${scenario.name.padEnd(9)} ${t.name.padEnd(11)} ${summarise(run)}`);
        await sleep(200);
      }
    }

    roundInfo.loadavgEnd = loadavg();
    const foreign = foreignDelta(foreign0, foreignCpu());
    roundInfo.wallS = Math.round(performance.now() - roundStart) / 1000;
    roundInfo.otherCpuS = Math.round(foreign.cpuS * 100) / 100;
    roundInfo.otherTop = foreign.top;
    roundInfo.elapsedS = Math.round((performance.now() - started) / 10) / 100;
    data.rounds.push(roundInfo);
    save();
  }

  await stopGroup(server);
  data.meta.loadavgEnd = loadavg();
  data.meta.totalWallS = Math.round((performance.now() - started) / 100) / 10;
  save();
  fs.mkdirSync(path.dirname(reportFile), { recursive: true });
  fs.writeFileSync(reportFile, renderReport(data));
  // A full run with every target refreshes the README's summary; a quick or
  // partial run never does.
  if (!opts.quick && !opts.targets && !opts.scenarios && !opts["skip-readme"]) updateReadme(data);
  if (opts["keep-logs"]) log(`target configs and logs kept in ${workDir}`);
  else fs.rmSync(workDir, { recursive: true, force: true });
  log(`done in ${data.meta.totalWallS}s: ${path.relative(root, outFile)}, ${path.relative(root, reportFile)}`);
}

/** Rewrites what lies between the README's bench:targets markers; leaves the README alone when it has none. */
function updateReadme(data) {
  const readme = path.join(root, "README.md");
  const text = fs.readFileSync(readme, "utf8");
  const start = "<!-- bench:targets:start -->";
  const end = "<!-- bench:targets:end -->";
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a < 0 || b < a) {
    process.stderr.write("README.md has no bench:targets markers; left as it is\n");
    return;
  }
  fs.writeFileSync(readme, `${text.slice(0, a + start.length)}\n${renderReadmeSummary(data)}\n${text.slice(b)}`);
  process.stderr.write("README.md: performance summary updated\n");
}

/** Keeps the tail of a target's own output (warnings, errors) in the results. */
function collectTargetLog(data, round, name, dir) {
  if (!dir) return;
  const notes = [];
  for (const file of ["output.log", "nginx-error.log"]) {
    const p = path.join(dir, file);
    if (!fs.existsSync(p)) continue;
    const text = fs.readFileSync(p, "utf8");
    const interesting = text.split("\n").filter((l) => /warn|error|alert|emerg|fatal/i.test(l) && !/"level":"info"/.test(l));
    notes.push(...interesting.slice(0, 5));
  }
  if (notes.length > 0) (data.targetNotes ??= []).push({ round, target: name, lines: notes });
}

function summarise(run) {
  if (!run.ok) return `FAILED: ${run.error.split("\n")[0]}`;
  const l = run.load;
  const cpu = run.proxyCpuS != null ? ` cpu ${run.proxyCpuS.toFixed(2)}s` : "";
  if (l.mode === "rr") return `${l.tps.toFixed(0)} tps p50 ${l.p50Us}us p99 ${l.p99Us}us failed ${l.failed}${cpu}`;
  if (l.mode === "cps") return `${l.cps.toFixed(0)} conn/s failed ${l.failed}${cpu}`;
  if (l.mode === "bulk") return `${l.mbps.toFixed(0)} MB/s${l.failed ? ` FAILED ${l.why}` : ""}${cpu}`;
  const perConn = run.memoryAfter ? ` ${((run.memoryAfter.rssKiB - run.memoryBefore.rssKiB) / l.conns).toFixed(2)} KiB/conn` : "";
  return `open ${run.opened.openMs}ms, ${l.working}/${l.conns} working${perConn}`;
}

await main();
