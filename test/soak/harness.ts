// The fault-injection soak of issue 10: the built CLI as a real process, with
// one listener per kind of upstream (echo, slow to answer, resets mid-stream,
// refuses, a host in another namespace that vanishes), mixed clients (clean
// echoes checked by sha256, resets mid-stream, half-closes, slow readers), a
// SIGHUP every second with the config file rewritten every third one. At the
// end, after the traffic stopped and the sessions drained, it checks the
// proxy's books (/metrics), descriptors, memory, log and every transfer.
// Used by test/soak/soak.test.ts (30 s in the default suite) and `npm run soak`.

import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { ChildLog } from "../helpers/child-log.js";
import { httpGet } from "../helpers/http.js";
import { rssBytes } from "../helpers/local-proxy.js";
import { allSamples, type Family, parseMetrics } from "../helpers/metrics-text.js";
import { exec, type Lab, type Namespace, restore, vanish } from "../helpers/netns.js";
import { bridgeInto } from "../helpers/ns-bridge.js";
import { poll } from "../helpers/poll.js";
import { type ProxyLogLine, ProxyProcess } from "../helpers/proxy-process.js";

const UPSTREAMS_SCRIPT = fileURLToPath(new URL("./soak-upstreams.mjs", import.meta.url));
const CLIENTS_SCRIPT = fileURLToPath(new URL("./soak-clients.mjs", import.meta.url));

/** What a run is asked to do. */
export interface SoakOptions {
  /** How long clients start new sessions. */
  readonly seconds: number;
  /** Sessions in flight at once: enough to overlap every fault, few enough for a loaded 2-core machine. */
  readonly concurrency: number;
  /** Progress lines (the test prints them). */
  readonly log: (line: string) => void;
}

/** One end-of-run check: its name, whether it held, and what was seen. */
export interface SoakCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** The figures of a run and its checks. */
export interface SoakReport {
  readonly summary: Record<string, unknown>;
  readonly checks: SoakCheck[];
}

/**
 * Timing of the listener whose upstream host vanishes: dead after 1 s idle +
 * 2 probes 1 s apart, unacknowledged data after 3 s, a SYN unanswered after
 * 1 s, so its sessions end within seconds of the host going away.
 */
const VANISH_LISTENER = { connectTimeout: "1s", keepalive: { idle: "1s", interval: "1s", count: 2, userTimeout: "3s" } } as const;
/** The host is up this long, then gone this long: longer than the user timeout, so sessions caught in flight die of it. */
const VANISH_CYCLE = { upMs: 3_000, downMs: 4_500 } as const;
const RELOAD_EVERY_MS = 1_000;
const RSS_SAMPLE_EVERY = 10;
/** Every REWRITE_EVERY-th SIGHUP comes with a rewritten config file (a listener added or removed, settings toggled). */
const REWRITE_EVERY = 3;
/** A session not finished this long after it started is reported `hung` (the slowest take a few seconds on a loaded machine). */
const SESSION_DEADLINE_MS = 45_000;
/** After the traffic stops, the sessions still open (a vanished host's, a reset's) get this long to be counted closed. */
const DRAIN_WAIT_MS = 30_000;
/**
 * RSS after the drain may exceed the RSS before the traffic by this much: V8
 * and glibc keep some heap after a burst of sessions (buffers of `concurrency`
 * sessions at 64 KiB high-water marks each way), but a leak of a few KiB per
 * session over thousands of sessions goes past it.
 */
const RSS_GROWTH_BOUND_BYTES = 64 * 1024 * 1024;
/*
 * Measured from the first sample 10 s into the traffic ("warm"), not from the
 * idle start: by then every buffer `concurrency` sessions need has been
 * allocated and V8's heap has grown to its working size (about 40 MiB above
 * the idle process here), so what the bound sees is growth that a longer run
 * keeps adding. A 30 s run is too short to see a small per-session leak; the
 * minutes of `npm run soak` are what the bound is for.
 */

/** A JSON-lines worker script run in a namespace, stopped by closing its stdin (SIGKILL after 2 s). */
class Worker<T extends { ev: string }> {
  readonly output: ChildLog<T>;
  readonly #child: ChildProcessWithoutNullStreams;

  constructor(ns: Namespace, lab: Lab, script: string, arg: unknown, label: string) {
    this.#child = spawn("ip", ["netns", "exec", ns.name, process.execPath, script, JSON.stringify(arg)], { stdio: ["pipe", "pipe", "pipe"] });
    this.#child.stdin.on("error", () => undefined);
    this.output = new ChildLog<T>(this.#child, label);
    lab.defer(() => this.stop());
  }

  /** Waits for the first event named `ev` from index `from` on. */
  waitFor(ev: string, timeoutMs: number, from = 0): Promise<T> {
    return this.output.entries.waitFor((e) => e.ev === ev, timeoutMs, `${ev} event`, from);
  }

  /** Sends one line on stdin. */
  command(line: string): void {
    this.#child.stdin.write(`${line}\n`);
  }

  stop(): Promise<void> {
    return this.output.stop(() => this.#child.stdin.end(), 2_000);
  }
}

interface UpstreamEvent {
  readonly ev: string;
  readonly name?: string;
  readonly port?: number;
  readonly servers?: Record<string, { accepted: number; resets: number; delayed: number; delayMsTotal: number; errors: number; bytesEchoed: number }>;
}

interface ClientEvent {
  readonly ev: string;
  readonly verdict?: string;
  readonly scenario?: string;
  readonly localPort?: number;
  readonly [key: string]: unknown;
}

interface ClientSummary {
  readonly elapsedMs: number;
  readonly sessions: number;
  readonly connected: Record<string, number>;
  readonly resetBeforeConnect: Record<string, number>;
  readonly byScenario: Record<string, { sessions: number; verdicts: Record<string, number>; bytesChecked: number; problems: number }>;
  readonly bytesSent: number;
  readonly bytesChecked: number;
  readonly problems: number;
  readonly errnos: Record<string, number>;
}

/** Where each kind of upstream listens. */
interface UpstreamPorts {
  readonly echo: number;
  readonly slow: number;
  readonly reset: number;
  readonly refuse: number;
  readonly far: number;
  readonly farIp: string;
}

/** `workers` of the soaked proxy. */
const WORKERS: number | "auto" = process.env.SOAK_WORKERS === undefined || process.env.SOAK_WORKERS === "auto" ? "auto" : Number(process.env.SOAK_WORKERS);

/** The config file of generation `gen`: odd generations add the `spare` listener and toggle settings on `echo`. */
function configFor(up: UpstreamPorts, gen: number): string {
  const toggled = gen % 2 === 1;
  const local = (port: number) => `127.0.0.1:${port}`;
  const listeners: Record<string, unknown>[] = [
    {
      name: "echo",
      listen: "127.0.0.1:0",
      upstream: { address: local(up.echo), connectTimeout: "5s" },
      client: { noDelay: !toggled },
      idleTimeout: toggled ? "5m" : 0,
    },
    { name: "slow", listen: "127.0.0.1:0", upstream: { address: local(up.slow), connectTimeout: "5s" } },
    { name: "reset", listen: "127.0.0.1:0", upstream: { address: local(up.reset), connectTimeout: "5s" } },
    { name: "refuse", listen: "127.0.0.1:0", upstream: { address: local(up.refuse), connectTimeout: "5s" } },
    { name: "vanish", listen: "127.0.0.1:0", upstream: { address: `${up.farIp}:${up.far}`, ...VANISH_LISTENER } },
  ];
  if (toggled) listeners.push({ name: "spare", listen: "127.0.0.1:0", upstream: { address: local(up.echo) } });
  return stringify({
    // SOAK_WORKERS=1 soaks the single-process proxy; the default is the proxy's own default (auto).
    workers: WORKERS,
    log: { level: "info", format: "json" },
    admin: { listen: "127.0.0.1:0" },
    shutdown: { drainTimeout: "5s" },
    listeners,
  });
}

/** The client scenarios: who talks to which listener, what ending is due, how often. */
function scenarios(ports: Record<string, number>): Record<string, unknown>[] {
  const on = (listener: string) => ({ host: "127.0.0.1", port: ports[listener] });
  const small = [1024, 1024 * 1024];
  return [
    { name: "echo/clean", listener: "echo", ...on("echo"), kind: "clean", expect: "intact", weight: 6, bytes: small },
    { name: "echo/half-close", listener: "echo", ...on("echo"), kind: "half-close", expect: "intact", weight: 3, bytes: small },
    { name: "echo/slow-reader", listener: "echo", ...on("echo"), kind: "slow-reader", expect: "intact", weight: 2, bytes: [64 * 1024, 512 * 1024] },
    { name: "echo/client-reset", listener: "echo", ...on("echo"), kind: "client-reset", expect: "any", weight: 3, bytes: small },
    { name: "slow/clean", listener: "slow", ...on("slow"), kind: "clean", expect: "intact", weight: 2, bytes: small },
    { name: "slow/half-close", listener: "slow", ...on("slow"), kind: "half-close", expect: "intact", weight: 2, bytes: [5, 64 * 1024] },
    { name: "slow/client-reset", listener: "slow", ...on("slow"), kind: "client-reset", expect: "any", weight: 2, bytes: small },
    // The upstream resets after 1-64 KiB; these clients send more, so a clean end would be a false one.
    { name: "reset/victim", listener: "reset", ...on("reset"), kind: "clean", expect: "aborted", weight: 3, bytes: [128 * 1024, 1024 * 1024] },
    { name: "reset/client-reset", listener: "reset", ...on("reset"), kind: "client-reset", expect: "any", weight: 1, bytes: small },
    { name: "refuse/victim", listener: "refuse", ...on("refuse"), kind: "half-close", expect: "aborted", weight: 2, bytes: [1, 4096] },
    { name: "vanish/clean", listener: "vanish", ...on("vanish"), kind: "clean", expect: "intact-or-aborted", weight: 3, bytes: small },
    { name: "vanish/half-close", listener: "vanish", ...on("vanish"), kind: "half-close", expect: "intact-or-aborted", weight: 2, bytes: small },
    { name: "vanish/client-reset", listener: "vanish", ...on("vanish"), kind: "client-reset", expect: "any", weight: 1, bytes: small },
  ];
}

const LISTENERS = ["echo", "slow", "reset", "refuse", "vanish"] as const;

/** Descriptors the proxy has open now: the process and its worker processes. */
function openFds(pid: number): number {
  return proxyPids(pid).reduce((sum, p) => sum + readdirSync(`/proc/${p}/fd`).length, 0);
}

/** Resident memory of the proxy: the process and its workers. */
function treeRss(pid: number): number {
  return proxyPids(pid).reduce((sum, p) => sum + rssBytes(p), 0);
}

/** The proxy's pid and those of its children (a supervisor's workers). */
function proxyPids(pid: number): number[] {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(/\s+/).filter(Boolean).map(Number);
  return [pid, ...children];
}

/** Sum of the samples of `name` whose labels include `labels`. */
function sum(families: ReadonlyMap<string, Family>, name: string, labels: Record<string, string> = {}): number {
  return allSamples(families)
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

const isReloadLine = (l: ProxyLogLine): boolean => /reload/i.test(l.msg);
const levelAtLeastError = (l: ProxyLogLine): boolean =>
  l.level === "error" || l.level === "fatal" || (typeof l.level === "number" && (l.level as number) >= 50);

/** The books of one listener: accepted = Σ closed over reasons, active = 0. */
function listenerBooks(m: ReadonlyMap<string, Family>, listener: string): { accepted: number; closed: number; active: number } {
  return {
    accepted: sum(m, "keepalive_proxy_connections_accepted_total", { listener }),
    closed: sum(m, "keepalive_proxy_sessions_closed_total", { listener }),
    active: sum(m, "keepalive_proxy_connections_active", { listener }),
  };
}

/**
 * Runs the soak and returns its figures and checks; every process and
 * namespace it makes is registered with `lab`, which the caller destroys.
 */
export async function runSoak(lab: Lab, options: SoakOptions): Promise<SoakReport> {
  const { log } = options;
  const [proxyNs, farNs] = await Promise.all([lab.namespace("soakproxy"), lab.namespace("soakfar")]);
  const link = await lab.link(proxyNs, farNs);

  // Upstreams: three kinds and a refusing port on the proxy namespace's loopback, an echo on the far host.
  const near = new Worker<UpstreamEvent>(proxyNs, lab, UPSTREAMS_SCRIPT, {
    servers: [
      { name: "echo", kind: "echo", host: "127.0.0.1" },
      { name: "slow", kind: "slow", host: "127.0.0.1", answerDelayMs: [200, 1500] },
      { name: "reset", kind: "reset", host: "127.0.0.1", resetAfterBytes: [1024, 64 * 1024] },
      { name: "refuse", kind: "refuse", host: "127.0.0.1" },
    ],
  }, "near upstreams");
  const far = new Worker<UpstreamEvent>(farNs, lab, UPSTREAMS_SCRIPT, { servers: [{ name: "far", kind: "echo", host: link.b.ip }] }, "far upstream");
  await Promise.all([near.waitFor("ready", 15_000), far.waitFor("ready", 15_000)]);
  const portOf = (w: Worker<UpstreamEvent>, name: string): number => {
    const e = w.output.entries.find((x) => x.ev === "listening" && x.name === name);
    if (e?.port === undefined) throw new Error(`upstream ${name} reported no port`);
    return e.port;
  };
  const up: UpstreamPorts = {
    echo: portOf(near, "echo"),
    slow: portOf(near, "slow"),
    reset: portOf(near, "reset"),
    refuse: portOf(near, "refuse"),
    far: portOf(far, "far"),
    farIp: link.b.ip,
  };

  const dir = mkdtempSync(join(tmpdir(), "kp-soak-"));
  lab.defer(() => rmSync(dir, { recursive: true, force: true }));
  const configFile = join(dir, "keepalive-proxy.yaml");
  writeFileSync(configFile, configFor(up, 0));

  const proxy = await ProxyProcess.start(proxyNs, lab, ["--config", configFile]);
  const cmdline = readFileSync(`/proc/${proxy.pid}/cmdline`, "utf8");
  if (!cmdline.includes("cli.js")) throw new Error(`pid ${proxy.pid} is not the proxy: ${cmdline}`);
  const ports: Record<string, number> = {};
  for (const name of LISTENERS) {
    const line = await proxy.waitForLog((l) => l.msg === "listening" && l.listener === name, 15_000, `listener ${name} listening`);
    ports[name] = Number(line.port);
  }
  const finsToClients = await recordFins(proxyNs, lab, Object.values(ports));
  const adminSocket = await bridgeInto(proxyNs, lab, "127.0.0.1", await proxy.adminPort());
  const scrape = async (): Promise<Map<string, Family>> => {
    const res = await httpGet({ socketPath: adminSocket }, "/metrics", { timeoutMs: 15_000 });
    if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
    return parseMetrics(res.body);
  };

  // One reload at a time: each SIGHUP waits for the proxy's line about the
  // previous one, so no two overlap and every one is accounted for.
  let reloadsSent = 0;
  let rewrites = 0;
  let generation = 0;
  const reloadOutcomes: Record<string, number> = {};
  const appliedRewrites = { started: 0, stopped: 0 };
  const reload = async (gen: number): Promise<void> => {
    if (gen !== generation) {
      writeFileSync(configFile, configFor(up, gen));
      generation = gen;
      rewrites += 1;
    }
    const from = proxy.logs.items.length;
    proxy.signal("SIGHUP");
    reloadsSent += 1;
    const line = await proxy.waitForLog(isReloadLine, 15_000, `the outcome of reload ${reloadsSent}`, from);
    reloadOutcomes[line.msg] = (reloadOutcomes[line.msg] ?? 0) + 1;
    if (Array.isArray(line.started) && line.started.includes("spare")) appliedRewrites.started += 1;
    if (Array.isArray(line.stopped) && line.stopped.includes("spare")) appliedRewrites.stopped += 1;
  };

  // Warm up what a process opens once (the admin server's first scrape, the
  // first reload), then take the baseline the end is compared with.
  await scrape();
  await reload(0);
  await scrape();
  const baseline = { fds: openFds(proxy.pid), rss: treeRss(proxy.pid) };
  log(`soak: proxy pid ${proxy.pid}, ${baseline.fds} descriptors, RSS ${(baseline.rss / 2 ** 20).toFixed(1)} MiB; ${options.seconds} s of traffic, ${options.concurrency} at once`);

  const clients = new Worker<ClientEvent>(proxyNs, lab, CLIENTS_SCRIPT, {
    durationMs: options.seconds * 1000,
    concurrency: options.concurrency,
    deadlineMs: SESSION_DEADLINE_MS,
    scenarios: scenarios(ports),
  }, "soak clients");
  const listenerOfScenario = new Map(scenarios(ports).map((s) => [String(s.name), String(s.listener)]));

  let trafficDone = false;
  const trafficEnds = Date.now() + options.seconds * 1000;
  /** The reloads and the vanishing host go on for as long as clients start sessions. */
  const faultsDone = (): boolean => trafficDone || Date.now() >= trafficEnds;
  let peakRss = baseline.rss;
  /** RSS every RSS_SAMPLE_EVERY reloads (about as many seconds), in MiB: a leak climbs, a warm heap levels off. */
  const rssSeries: number[] = [];
  const background: string[] = [];

  const reloadLoop = (async () => {
    while (!faultsDone()) {
      const next = Date.now() + RELOAD_EVERY_MS;
      await reload((reloadsSent + 1) % REWRITE_EVERY === 0 ? generation + 1 : generation);
      const rss = treeRss(proxy.pid);
      peakRss = Math.max(peakRss, rss);
      if (reloadsSent % RSS_SAMPLE_EVERY === 0) rssSeries.push(rss);
      await sleepUntil(next, faultsDone);
    }
  })().catch((e: unknown) => background.push(`reload loop: ${String(e)}`));

  let vanishes = 0;
  let vanished = false;
  const vanishLoop = (async () => {
    while (!faultsDone()) {
      await sleepUntil(Date.now() + VANISH_CYCLE.upMs, faultsDone);
      if (faultsDone()) break;
      await vanish(farNs);
      vanished = true;
      vanishes += 1;
      // Once down, the host stays down its whole period: sessions caught in flight must die of it.
      await sleepUntil(Date.now() + VANISH_CYCLE.downMs, () => trafficDone);
      await restore(farNs);
      vanished = false;
    }
  })().catch((e: unknown) => background.push(`vanish loop: ${String(e)}`));

  let summary: ClientSummary;
  try {
    const progressFrom = { i: 0 };
    const progress = setInterval(() => {
      const items = clients.output.entries.items.slice(progressFrom.i);
      progressFrom.i += items.length;
      const last = items.filter((e) => e.ev === "progress").at(-1);
      if (last) {
        log(`soak: ${String(last.sessions)} sessions, ${String(last.problems)} problems, reloads ${reloadsSent}, vanishes ${vanishes}, RSS ${mib(treeRss(proxy.pid))} MiB`);
      }
    }, 10_000);
    try {
      summary = (await clients.waitFor("summary", options.seconds * 1000 + SESSION_DEADLINE_MS + 30_000)) as unknown as ClientSummary;
    } finally {
      clearInterval(progress);
    }
  } finally {
    trafficDone = true;
    await Promise.all([reloadLoop, vanishLoop]);
    if (vanished) await restore(farNs);
  }

  // Back to the starting config (no `spare`), so descriptors compare like for like.
  if (generation !== 0) await reload(0);

  // Drain: every listener's books balance and nothing is open.
  let books: Record<string, { accepted: number; closed: number; active: number }> = {};
  let drained = true;
  let finalMetrics: Map<string, Family>;
  try {
    finalMetrics = await poll(
      async () => {
        const m = await scrape();
        books = Object.fromEntries(LISTENERS.map((l) => [l, listenerBooks(m, l)]));
        return Object.values(books).every((b) => b.active === 0 && b.accepted === b.closed) ? m : undefined;
      },
      DRAIN_WAIT_MS,
      "every listener to balance",
      500,
    );
  } catch {
    drained = false;
    finalMetrics = await scrape();
  }
  // What is left open, as the proxy and the kernel see it: the evidence a failed drain needs.
  const leftOpen = drained
    ? undefined
    : {
        connections: (await httpGet({ socketPath: adminSocket }, "/connections")).body.slice(0, 6000),
        sockets: (await exec(proxyNs, ["ss", "-tanpo"]).catch((e: unknown) => ({ stdout: String(e) }))).stdout
          .split("\n")
          .filter((l) => l.includes(`pid=${proxy.pid},`))
          .join("\n"),
      };
  let endFds = openFds(proxy.pid);
  try {
    endFds = await poll(async () => {
      endFds = openFds(proxy.pid);
      return endFds <= baseline.fds ? endFds : undefined;
    }, 10_000, "descriptors back to the baseline", 250);
  } catch {
    // reported by the check below
  }
  const endRss = treeRss(proxy.pid);
  const warmRss = rssSeries[0] ?? baseline.rss;
  const endFdTargets = fdTargets(proxy.pid);

  near.command("stats");
  far.command("stats");
  const [nearStats, farStats] = await Promise.all([near.waitFor("stats", 5_000), far.waitFor("stats", 5_000)]);
  const upstreamStats = { ...nearStats.servers, ...farStats.servers };

  // Each problem with the proxy's own account of that session (matched by the client's port).
  // A client that read end of file where the upstream failed saw a false clean close only
  // if the proxy put a FIN on the wire to it: a reset that reaches a client whose own FIN is
  // still in flight can be read as end of file by that client's kernel (its send takes the
  // ECONNRESET), and the wire then shows the proxy's RST and no FIN.
  await sleep(500);
  const allProblems = clients.output.entries.items
    .filter((e) => e.ev === "problem")
    .map((p) => ({ ...p, proxySaw: proxyLineFor(proxy.logs.items, p) }));
  const resetReadAsEnd = allProblems.filter(
    (p) => p.verdict?.startsWith("false clean close") && p.localPort !== undefined && !finsToClients.has(`${ports[listenerOfScenario.get(String(p.scenario)) ?? ""]}>${String(p.localPort)}`),
  );
  const problems = allProblems.filter((p) => !resetReadAsEnd.includes(p));
  const errorLines = proxy.logs.items.filter(levelAtLeastError);

  // Stop the proxy as an operator would: with no session left it must exit 0 at once.
  proxy.signal("SIGTERM");
  const exitCode = await Promise.race([proxy.exitCode(), sleep(15_000).then(() => "still running after 15 s")]);
  const stderr = proxy.stderr;

  const closedByReason: Record<string, number> = {};
  for (const s of allSamples(finalMetrics)) {
    if (s.name === "keepalive_proxy_sessions_closed_total" && s.value > 0) {
      const reason = s.labels.reason ?? "?";
      closedByReason[reason] = (closedByReason[reason] ?? 0) + s.value;
    }
  }
  const connectedPerListener: Record<string, number> = {};
  for (const [scenario, n] of [...Object.entries(summary.connected), ...Object.entries(summary.resetBeforeConnect)]) {
    const l = listenerOfScenario.get(scenario) ?? scenario;
    connectedPerListener[l] = (connectedPerListener[l] ?? 0) + n;
  }
  const verdicts = (name: string) => summary.byScenario[name]?.verdicts ?? {};
  const sessionsOf = (pred: (name: string) => boolean) =>
    Object.entries(summary.byScenario)
      .filter(([n]) => pred(n))
      .reduce((a, [, s]) => a + s.sessions, 0);
  const reloadsCounted = {
    success: sum(finalMetrics, "keepalive_proxy_config_reloads_total", { result: "success" }),
    all: sum(finalMetrics, "keepalive_proxy_config_reloads_total"),
  };

  const report = {
    node: process.version,
    seconds: options.seconds,
    concurrency: options.concurrency,
    elapsedMs: summary.elapsedMs,
    sessionsRun: summary.sessions,
    sessionsByScenario: Object.fromEntries(Object.entries(summary.byScenario).map(([n, s]) => [n, { sessions: s.sessions, ...s.verdicts }])),
    faultsInjected: {
      clientResets: sessionsOf((n) => n.endsWith("/client-reset")),
      clientHalfCloses: sessionsOf((n) => n.endsWith("/half-close")),
      slowReaders: sessionsOf((n) => n.endsWith("/slow-reader")),
      upstreamRefusals: sessionsOf((n) => n.startsWith("refuse/")),
      upstreamResets: upstreamStats.reset?.resets ?? 0,
      upstreamSlowAnswers: upstreamStats.slow?.delayed ?? 0,
      upstreamVanishes: vanishes,
      sessionsCutByVanish: (verdicts("vanish/clean").aborted ?? 0) + (verdicts("vanish/half-close").aborted ?? 0),
    },
    reloads: { sent: reloadsSent, withRewrittenConfig: rewrites, outcomes: reloadOutcomes, counted: reloadsCounted, spareListenerStarted: appliedRewrites.started, spareListenerStopped: appliedRewrites.stopped },
    resetsReadAsEndByClients: resetReadAsEnd.length,
    bytesSent: summary.bytesSent,
    bytesChecked: summary.bytesChecked,
    lost: {
      problems: problems.length,
      hung: problems.filter((p) => p.verdict === "hung").length,
      falseCleanCloses: problems.filter((p) => p.verdict?.startsWith("false clean close")).length,
      notIntact: problems.filter((p) => p.verdict === "clean end, data not intact").length,
      acceptedNotClosed: Object.values(books).reduce((a, b) => a + Math.max(0, b.accepted - b.closed), 0),
      stillActive: Object.values(books).reduce((a, b) => a + b.active, 0),
    },
    books,
    closedByReason,
    clientErrnos: summary.errnos,
    descriptors: { start: baseline.fds, end: endFds },
    rssMiB: { start: mib(baseline.rss), peak: mib(Math.max(peakRss, endRss)), warm: mib(warmRss), end: mib(endRss), boundGrowthFromWarm: mib(RSS_GROWTH_BOUND_BYTES), every10s: rssSeries.map(mib) },
    proxyErrorLines: errorLines.length,
    proxyExit: exitCode,
  };

  const checks: SoakCheck[] = [
    check("the traffic ran", summary.sessions > 0 && Object.values(connectedPerListener).every((n) => n > 0), JSON.stringify(connectedPerListener)),
    check("every clean transfer intact, no session hung or falsely closed clean", problems.length === 0, tailJson(problems)),
    check(
      "accepted_total = Σ sessions_closed_total and connections_active = 0 on every listener",
      drained,
      `${JSON.stringify(books)}\nleft open: ${JSON.stringify(leftOpen, null, 1)}`,
    ),
    check(
      "every connection a client made was accepted by the proxy",
      LISTENERS.every((l) => books[l]?.accepted === (connectedPerListener[l] ?? 0)),
      `accepted ${JSON.stringify(Object.fromEntries(LISTENERS.map((l) => [l, books[l]?.accepted])))} vs connected ${JSON.stringify(connectedPerListener)}`,
    ),
    check("descriptors back to the starting count", endFds <= baseline.fds, `start ${baseline.fds}, end ${endFds}; at the end: ${endFdTargets}`),
    check(
      `RSS growth from warm to the end ≤ ${mib(RSS_GROWTH_BOUND_BYTES)} MiB`,
      endRss - warmRss <= RSS_GROWTH_BOUND_BYTES,
      `idle start ${mib(baseline.rss)} MiB, warm ${mib(warmRss)} MiB, end ${mib(endRss)} MiB`,
    ),
    check("no log line at level error or fatal", errorLines.length === 0, tailJson(errorLines)),
    check("every SIGHUP applied (one `config reloaded` line and one success each)", reloadOutcomes["config reloaded"] === reloadsSent && reloadsCounted.success === reloadsSent && reloadsCounted.all === reloadsSent, JSON.stringify(report.reloads)),
    check("rewritten configs really applied (the spare listener came and went)", appliedRewrites.started > 0 && appliedRewrites.stopped === appliedRewrites.started, JSON.stringify(appliedRewrites)),
    check("the upstream host vanished at least once", vanishes > 0, `${vanishes} vanishes`),
    check("no stack trace or error on the proxy's stderr", !/error|\n\s+at /i.test(stderr), stderr.slice(-2000)),
    check("the proxy exits 0 on SIGTERM once drained", exitCode === 0, String(exitCode)),
    check("the harness's own loops ran without error", background.length === 0, background.join("; ")),
  ];
  return { summary: report, checks };
}

/** The proxy's `session closed` line for a client's problem: same client port (ports are reused, so the one closest in time). */
function proxyLineFor(lines: readonly ProxyLogLine[], p: ClientEvent): ProxyLogLine | undefined {
  const t = Number(p.t);
  let best: ProxyLogLine | undefined;
  for (const l of lines) {
    if (l.msg !== "session closed" || l.client !== `127.0.0.1:${String(p.localPort)}`) continue;
    if (best === undefined || Math.abs(Date.parse(String(l.time)) - t) < Math.abs(Date.parse(String(best.time)) - t)) best = l;
  }
  return best;
}

/**
 * Records, with tcpdump inside the proxy's namespace, every `listenPort>clientPort`
 * pair the proxy sent a FIN on: the ground truth for a clean close, where a
 * client's own reading of end of file is only a hint.
 */
async function recordFins(ns: Namespace, lab: Lab, listenPorts: readonly number[]): Promise<Set<string>> {
  const filter = `tcp[tcpflags] & tcp-fin != 0 and (${listenPorts.map((p) => `src port ${p}`).join(" or ")})`;
  const child = spawn("ip", ["netns", "exec", ns.name, "tcpdump", "-i", "lo", "-nn", "-l", "-q", filter], { stdio: ["ignore", "pipe", "pipe"] });
  lab.defer(() => {
    child.kill("SIGTERM");
  });
  const seen = new Set<string>();
  let rest = "";
  child.stdout.on("data", (chunk: Buffer) => {
    const lines = (rest + chunk.toString()).split("\n");
    rest = lines.pop() ?? "";
    // "12:00:00.000000 IP 127.0.0.1.7000 > 127.0.0.1.51234: tcp 0"
    for (const line of lines) {
      const pair = /\.(\d+) > [\d.]+\.(\d+):/.exec(line);
      if (pair) seen.add(`${pair[1]}>${pair[2]}`);
    }
  });
  // tcpdump says "listening on lo" on stderr once its capture is open.
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("tcpdump did not start within 10 s")), 10_000);
    child.stderr.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("listening on")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => reject(new Error(`tcpdump exited with ${String(code)}`)));
  });
  return seen;
}

function check(name: string, ok: boolean, detail: string): SoakCheck {
  return { name, ok, detail };
}

function mib(bytes: number): number {
  return Math.round((bytes / 2 ** 20) * 10) / 10;
}

function tailJson(items: readonly unknown[]): string {
  return items
    .slice(0, 10)
    .map((i) => JSON.stringify(i))
    .join("\n");
}

/** What the proxy's descriptors point at, grouped (sockets, pipes, files), for a failure message. */
function fdTargets(pid: number): string {
  const kinds: Record<string, number> = {};
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      let target = "?";
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`).replace(/\[\d+\]$/, "");
      } catch {
        // closed meanwhile
      }
      kinds[target] = (kinds[target] ?? 0) + 1;
    }
  } catch {
    return "process gone";
  }
  return JSON.stringify(kinds);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Sleeps until `at`, waking early (every 100 ms checked) once `stop()` is true. */
async function sleepUntil(at: number, stop: () => boolean): Promise<void> {
  while (Date.now() < at && !stop()) await sleep(Math.min(100, at - Date.now()));
}
