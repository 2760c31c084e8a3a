// Turns the raw results of bench/run.mjs (results/latest.json) into
// bench/RESULTS.md: per scenario × target the median over rounds, its
// min–max, the median of the per-round ratios to the direct connection, and a
// section that judges keepalive-proxy against HAProxy on the issue's targets,
// and one that judges its TLS termination against HAProxy's and stunnel's.
//
//   node bench/run.mjs --report-only      re-renders RESULTS.md from latest.json

import { judged, judgedTls } from "./targets.mjs";

const SCENARIO_TITLES = {
  rr1: "Request/response, 64 B, 1 connection",
  rr50: "Request/response, 64 B, 50 connections",
  cps: "A new connection per request, 32 in parallel",
  "bulk-up": "Bulk transfer, client → upstream (one connection)",
  "bulk-down": "Bulk transfer, upstream → client (one connection)",
  idle: "Idle proxied connections held open",
  "tls-cps": "TLS: a new TLS 1.3 session per request (full handshake, 64 B there and back, clean close), 32 in parallel",
  "tls-bulk-up": "TLS: bulk transfer through TLS termination, client → upstream (one connection)",
  "tls-bulk-down": "TLS: bulk transfer through TLS termination, upstream → client (one connection)",
  "tls-idle": "TLS: idle TLS sessions held open",
};

/** Scenarios whose runs hold connections open and count those still working at the end. */
const IDLE_SCENARIOS = new Set(["idle", "tls-idle"]);

/** Targets of the scenario's kind: TLS targets for TLS scenarios, the others for plaintext ones (results from before TLS have no `tls`). */
const ofKind = (targets, scenario) => targets.filter((t) => Boolean(t.tls) === scenario.startsWith("tls-"));

/** Median of numbers (mean of the middle two for an even count). */
function median(xs) {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function fmt(x, digits) {
  if (x === undefined || x === null || Number.isNaN(x)) return "–";
  const d = digits ?? (Math.abs(x) >= 1000 ? 0 : Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2);
  return x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
}

/** "median [min–max]", or just the value for a single round. */
function cell(xs, digits) {
  if (xs.length === 0) return "–";
  if (xs.length === 1) return fmt(xs[0], digits);
  return `${fmt(median(xs), digits)} [${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)}]`;
}

function ratioCell(xs) {
  if (xs.length === 0) return "–";
  if (xs.length === 1) return `${fmt(xs[0], 2)}×`;
  return `${fmt(median(xs), 2)}× [${fmt(Math.min(...xs), 2)}–${fmt(Math.max(...xs), 2)}]`;
}

/** How each scenario's figures are read out of a run. */
const metric = {
  p50: (r) => r.load.p50Us,
  p99: (r) => r.load.p99Us,
  p999: (r) => r.load.p999Us,
  tps: (r) => r.load.tps,
  cps: (r) => r.load.cps,
  mbps: (r) => r.load.mbps,
  openMs: (r) => r.opened.openMs,
  rssKiBPerConn: (r) => (r.memoryAfter ? (r.memoryAfter.rssKiB - r.memoryBefore.rssKiB) / r.load.conns : undefined),
  pssKiBPerConn: (r) => (r.memoryAfter ? (r.memoryAfter.pssKiB - r.memoryBefore.pssKiB) / r.load.conns : undefined),
  processes: (r) => r.memoryAfter?.processes,
  working: (r) => r.load.working,
  // Proxy CPU per unit of work; rr counts warm-up transactions too because its CPU window includes them.
  cpuUsPerTx: (r) => (r.proxyCpuS == null ? undefined : (r.proxyCpuS * 1e6) / r.load.allTransactions),
  userUsPerTx: (r) => (r.proxyUserS == null ? undefined : (r.proxyUserS * 1e6) / r.load.allTransactions),
  sysUsPerTx: (r) => (r.proxySysS == null ? undefined : (r.proxySysS * 1e6) / r.load.allTransactions),
  cpuUsPerConn: (r) => (r.proxyCpuS == null ? undefined : (r.proxyCpuS * 1e6) / Math.max(1, r.load.connections)),
  cpuSPerGB: (r) => (r.proxyCpuS == null ? undefined : r.proxyCpuS / (r.load.bytes / 1e9)),
  cpuUsPerOpen: (r) => (r.proxyCpuOpenS == null ? undefined : (r.proxyCpuOpenS * 1e6) / Math.max(1, r.opened.open)),
  loadgenCpuShare: (r) => (r.load.cpuUserS + r.load.cpuSysS) / r.wallS,
  serverCpuShare: (r) => (r.serverCpuS == null ? undefined : r.serverCpuS / r.wallS),
};

/** Failed operations in one run: connections, transactions, streams or idle connections not working at the end. */
export function failuresOf(run) {
  if (!run.ok) return 1;
  if (IDLE_SCENARIOS.has(run.scenario)) return run.load.conns - run.load.working;
  return run.load.failed ?? 0;
}

class Results {
  constructor(data) {
    this.data = data;
    this.runs = data.runs;
  }

  okRuns(target, scenario) {
    return this.runs.filter((r) => r.ok && r.target === target && r.scenario === scenario);
  }

  values(target, scenario, fn) {
    return this.okRuns(target, scenario)
      .map(fn)
      .filter((x) => x !== undefined && x !== null && !Number.isNaN(x));
  }

  /** fn(run of target) ⊕ fn(run of other) for each round where both ran; ⊕ is a ratio unless `op` says otherwise. */
  paired(target, other, scenario, fn, op = (a, b) => a / b) {
    const out = [];
    for (const r of this.okRuns(target, scenario)) {
      const o = this.runs.find((x) => x.ok && x.target === other && x.scenario === scenario && x.round === r.round);
      const a = r && fn(r);
      const b = o && fn(o);
      if (a != null && b != null && !Number.isNaN(a) && !Number.isNaN(b)) out.push(op(a, b));
    }
    return out;
  }

  failures(target, scenario) {
    return this.runs.filter((r) => r.target === target && r.scenario === scenario).reduce((n, r) => n + failuresOf(r), 0);
  }
}

const minus = (a, b) => a - b;

/** A markdown table; the first column left-aligned, the others right-aligned unless `left`. */
function table(header, rows, { left = false } = {}) {
  const rule = header.map((_, i) => (i === 0 || left ? "---" : "---:")).join("|");
  return [`| ${header.join(" | ")} |`, `|${rule}|`, ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n");
}

/** A target's name in a table: ours in bold. */
const label = (t) => (t.group === "ours" ? `**${t.label}**` : t.label);

function scenarioTable(res, scenario, targets) {
  const d = "direct";
  switch (scenario) {
    case "rr1":
      return table(
        ["target", "p50 µs", "added p50 µs", "p50 × direct", "p99 µs", "added p99 µs", "tx/s", "proxy CPU µs/tx"],
        targets.map((t) => [
          label(t),
          cell(res.values(t.name, scenario, metric.p50), 1),
          t.name === d ? "–" : cell(res.paired(t.name, d, scenario, metric.p50, minus), 1),
          t.name === d ? "1×" : ratioCell(res.paired(t.name, d, scenario, metric.p50)),
          cell(res.values(t.name, scenario, metric.p99), 1),
          t.name === d ? "–" : cell(res.paired(t.name, d, scenario, metric.p99, minus), 1),
          cell(res.values(t.name, scenario, metric.tps), 0),
          cell(res.values(t.name, scenario, metric.cpuUsPerTx), 1),
        ]),
      );
    case "rr50":
      return table(
        ["target", "tx/s", "× direct", "p50 µs", "p99 µs", "p99.9 µs", "proxy CPU µs/tx", "of which user / sys"],
        targets.map((t) => [
          label(t),
          cell(res.values(t.name, scenario, metric.tps), 0),
          t.name === d ? "1×" : ratioCell(res.paired(t.name, d, scenario, metric.tps)),
          cell(res.values(t.name, scenario, metric.p50), 0),
          cell(res.values(t.name, scenario, metric.p99), 0),
          cell(res.values(t.name, scenario, metric.p999), 0),
          cell(res.values(t.name, scenario, metric.cpuUsPerTx), 1),
          t.name === d ? "–" : `${fmt(median(res.values(t.name, scenario, metric.userUsPerTx)), 1)} / ${fmt(median(res.values(t.name, scenario, metric.sysUsPerTx)), 1)}`,
        ]),
      );
    case "cps":
      return table(
        ["target", "conn/s", "× direct", "p50 µs", "p99 µs", "failed (all rounds)", "proxy CPU µs/conn"],
        targets.map((t) => [
          label(t),
          cell(res.values(t.name, scenario, metric.cps), 0),
          t.name === d ? "1×" : ratioCell(res.paired(t.name, d, scenario, metric.cps)),
          cell(res.values(t.name, scenario, metric.p50), 0),
          cell(res.values(t.name, scenario, metric.p99), 0),
          String(res.failures(t.name, scenario)),
          cell(res.values(t.name, scenario, metric.cpuUsPerConn), 1),
        ]),
      );
    case "bulk-up":
    case "bulk-down":
      return bulkTable(res, scenario, targets, d, "direct");
    case "idle":
      return table(
        ["target", "connections", "time to open ms", "× direct", "RSS KiB/conn (VmRSS)", "PSS KiB/conn", "processes", "working after (worst round)", "proxy CPU µs/conn to open"],
        targets.map((t) => {
          const working = res.values(t.name, scenario, metric.working);
          const conns = res.values(t.name, scenario, (r) => r.load.conns);
          const sameCount = res.paired(t.name, d, scenario, (r) => r.load.conns).every((x) => x === 1);
          return [
            label(t),
            conns.length ? fmt(Math.max(...conns), 0) : "–",
            cell(res.values(t.name, scenario, metric.openMs), 0),
            t.name === d ? "1×" : sameCount ? ratioCell(res.paired(t.name, d, scenario, metric.openMs)) : "–",
            t.name === d ? "–" : cell(res.values(t.name, scenario, metric.rssKiBPerConn), 2),
            t.name === d ? "–" : cell(res.values(t.name, scenario, metric.pssKiBPerConn), 2),
            t.name === d ? "–" : fmt(median(res.values(t.name, scenario, metric.processes)), 0),
            working.length ? `${fmt(Math.min(...working), 0)} / ${fmt(Math.max(...conns), 0)}` : "–",
            cell(res.values(t.name, scenario, metric.cpuUsPerOpen), 1),
          ];
        }),
      );
    default:
      return tlsScenarioTable(res, scenario, targets);
  }
}

/** A bulk scenario's table (plaintext or TLS): MB/s and its ratio to `base` in the same round. */
function bulkTable(res, scenario, targets, base, baseLabel) {
  return table(
    ["target", "MB/s", `× ${baseLabel}`, "proxy CPU s/GB", "failed (all rounds)"],
    targets.map((t) => [
      label(t),
      cell(res.values(t.name, scenario, metric.mbps), 0),
      t.name === base ? "1×" : ratioCell(res.paired(t.name, base, scenario, metric.mbps)),
      cell(res.values(t.name, scenario, metric.cpuSPerGB), 2),
      String(res.failures(t.name, scenario)),
    ]),
  );
}

/**
 * The TLS scenarios' tables: there is no direct TLS connection to compare
 * with, so the base of the ratios is HAProxy TLS in the same round.
 */
function tlsScenarioTable(res, scenario, targets) {
  const base = judgedTls.reference;
  const vsBase = (t, fn) => (t.name === base ? "1×" : ratioCell(res.paired(t.name, base, scenario, fn)));
  switch (scenario) {
    case "tls-cps":
      return table(
        ["target", "sessions/s", "× HAProxy TLS", "p50 µs", "p99 µs", "failed (all rounds)", "proxy CPU µs/session"],
        targets.map((t) => [
          label(t),
          cell(res.values(t.name, scenario, metric.cps), 0),
          vsBase(t, metric.cps),
          cell(res.values(t.name, scenario, metric.p50), 0),
          cell(res.values(t.name, scenario, metric.p99), 0),
          String(res.failures(t.name, scenario)),
          cell(res.values(t.name, scenario, metric.cpuUsPerConn), 0),
        ]),
      );
    case "tls-bulk-up":
    case "tls-bulk-down":
      return bulkTable(res, scenario, targets, base, "HAProxy TLS");
    case "tls-idle":
      return table(
        ["target", "sessions", "time to open ms", "RSS KiB/session (VmRSS)", "PSS KiB/session", "processes", "working after (worst round)", "proxy CPU µs/session to open"],
        targets.map((t) => {
          const working = res.values(t.name, scenario, metric.working);
          const conns = res.values(t.name, scenario, (r) => r.load.conns);
          return [
            label(t),
            conns.length ? fmt(Math.max(...conns), 0) : "–",
            cell(res.values(t.name, scenario, metric.openMs), 0),
            cell(res.values(t.name, scenario, metric.rssKiBPerConn), 2),
            cell(res.values(t.name, scenario, metric.pssKiBPerConn), 2),
            fmt(median(res.values(t.name, scenario, metric.processes)), 0),
            working.length ? `${fmt(Math.min(...working), 0)} / ${fmt(Math.max(...conns), 0)}` : "–",
            cell(res.values(t.name, scenario, metric.cpuUsPerOpen), 0),
          ];
        }),
      );
    default:
      return "";
  }
}

/**
 * The keepalive-proxy target the section judges and why: `judged.ours` when
 * it ran, else the stand-in measured in its place (a build without the flag
 * it needs), else none; `why` says what was skipped.
 */
function judgedOurs(data) {
  const targets = data.meta.targets;
  const skipped = data.meta.skipped ?? [];
  const ours = targets.find((t) => t.name === judged.ours);
  if (ours) return { ours };
  const gone = skipped.find((s) => s.name === judged.ours);
  const standIn = targets.find((t) => t.standInFor === judged.ours);
  const why = gone ? `${gone.label} was skipped: ${gone.reason}` : `${judged.ours} was not in this run`;
  return { ours: standIn, why };
}

const verdict = (ok) => (ok === undefined ? "not measured" : ok ? "**met**" : "**missed**");
const spread = (xs, digits, unit = "") => (xs.length > 1 ? ` [${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)}${unit}]` : "");
const withUnit = (x, digits, unit) => (x === undefined ? "–" : `${fmt(x, digits)} ${unit}`);
const signed = (x, digits) => (x === undefined ? "–" : `${x >= 0 ? "+" : ""}${fmt(x, digits)}`);

/** The issue's targets for keepalive-proxy, each judged on same-round comparisons with HAProxy. */
function targetsSection(res, data) {
  const targets = data.meta.targets;
  const { ours, why } = judgedOurs(data);
  const ref = targets.find((t) => t.name === judged.reference);
  const note = why && ours ? `_${why}; judged instead: ${ours.label}._\n\n` : "";
  if (!ours || !ref) return `_${why ?? "keepalive-proxy was not in this run"}${ref ? "" : "; HAProxy was not in this run"}: no targets judged._`;
  const alt = targets.find((t) => t.name === judged.alt && t.name !== ours.name);
  const base = targets.find((t) => t.name === judged.baseline);
  const rows = [];
  const med = (xs) => median(xs);

  const ratioRow = (what, scenario, fn, unit, threshold, digits) => {
    const r = res.paired(ours.name, ref.name, scenario, fn);
    const m = med(r);
    const altR = alt ? med(res.paired(alt.name, ref.name, scenario, fn)) : undefined;
    rows.push([
      what,
      withUnit(med(res.values(ours.name, scenario, fn)), digits, unit),
      withUnit(med(res.values(ref.name, scenario, fn)), digits, unit),
      r.length ? `${fmt(m, 2)}×${spread(r, 2)}` : "–",
      `≥ ${fmt(threshold, 1)}×`,
      verdict(m === undefined ? undefined : m >= threshold),
      altR === undefined ? "–" : `${fmt(altR, 2)}×`,
    ]);
  };
  ratioRow("transactions/s, 50 connections", "rr50", metric.tps, "tx/s", 1, 0);
  ratioRow("bulk MB/s, client → upstream", "bulk-up", metric.mbps, "MB/s", 1, 0);
  ratioRow("bulk MB/s, upstream → client", "bulk-down", metric.mbps, "MB/s", 1, 0);
  ratioRow("connections/s, 32 parallel", "cps", metric.cps, "conn/s", 0.8, 0);

  {
    const oursAdded = res.paired(ours.name, "direct", "rr1", metric.p50, minus);
    const refAdded = res.paired(ref.name, "direct", "rr1", metric.p50, minus);
    const diff = res.paired(ours.name, ref.name, "rr1", metric.p50, minus);
    const m = med(diff);
    const altDiff = alt ? med(res.paired(alt.name, ref.name, "rr1", metric.p50, minus)) : undefined;
    rows.push([
      "p50 latency added, 1 connection",
      oursAdded.length ? `${signed(med(oursAdded), 1)} µs` : "–",
      refAdded.length ? `${signed(med(refAdded), 1)} µs` : "–",
      diff.length ? `${signed(m, 1)} µs${spread(diff, 1)}` : "–",
      "≤ HAProxy + 10 µs",
      verdict(m === undefined ? undefined : m <= 10),
      altDiff === undefined ? "–" : `${signed(altDiff, 1)} µs`,
    ]);
  }
  if (base) {
    // Issue 12, item 2: the proxy's own work per session, against the naive
    // pipe measured in the same round (both Node, both on every core they use).
    const r = res.paired(ours.name, base.name, "cps", metric.cpuUsPerConn);
    const m = med(r);
    const altR = alt ? med(res.paired(alt.name, base.name, "cps", metric.cpuUsPerConn)) : undefined;
    rows.push([
      "proxy CPU per new connection",
      withUnit(med(res.values(ours.name, "cps", metric.cpuUsPerConn)), 0, "µs"),
      withUnit(med(res.values(ref.name, "cps", metric.cpuUsPerConn)), 0, "µs"),
      r.length ? `${fmt(m, 2)}× the naive Node pipe (${fmt(med(res.values(base.name, "cps", metric.cpuUsPerConn)), 0)} µs)${spread(r, 2)}` : "–",
      "≤ 1.5× naive pipe",
      verdict(m === undefined ? undefined : m <= 1.5),
      altR === undefined ? "–" : `${fmt(altR, 2)}× naive pipe`,
    ]);
  }
  {
    const v = res.values(ours.name, "idle", metric.rssKiBPerConn);
    const m = med(v);
    const altM = alt ? med(res.values(alt.name, "idle", metric.rssKiBPerConn)) : undefined;
    const conns = Math.max(0, ...res.values(ours.name, "idle", (r) => r.load.conns));
    rows.push([
      `RSS per idle proxied connection${conns ? ` (${fmt(conns, 0)} held)` : ""}`,
      v.length ? `${fmt(m, 2)} KiB${spread(v, 2)}` : "–",
      withUnit(med(res.values(ref.name, "idle", metric.rssKiBPerConn)), 2, "KiB"),
      "–",
      "≤ 5 KiB",
      verdict(m === undefined ? undefined : m <= 5),
      altM === undefined ? "–" : `${fmt(altM, 2)} KiB`,
    ]);
  }
  {
    const count = (name) => res.runs.filter((r) => r.target === name).reduce((n, r) => n + failuresOf(r), 0);
    const n = count(ours.name);
    const ran = res.runs.some((r) => r.target === ours.name);
    rows.push([
      "failed connections, every scenario and round",
      String(n),
      String(count(ref.name)),
      "–",
      "0",
      verdict(ran ? n === 0 : undefined),
      alt ? String(count(alt.name)) : "–",
    ]);
  }
  const header = ["target", ours.label, ref.label, "same-round comparison", "goal", "verdict"];
  if (!alt) return `${note}${table(header, rows.map((r) => r.slice(0, -1)))}`;
  return `${note}${table([...header, `${alt.label}, compared the same way`], rows)}`;
}

/** Whether the run measured TLS termination at all (results from before it did not). */
const hasTls = (data) => data.meta.targets.some((t) => t.tls) && data.runs.some((r) => r.scenario.startsWith("tls-"));

/**
 * Issue 13's TLS targets: keepalive-proxy's TLS termination against HAProxy's
 * (≥ 0.8× on new sessions/s and on bulk MB/s each way) and against stunnel's
 * (ahead on the same), each ratio taken within a round, then the median; CPU
 * per session and RSS per idle session are reported beside them, not judged.
 */
function tlsSection(res, data) {
  const targets = data.meta.targets;
  const find = (name) => targets.find((t) => t.name === name);
  const ours = find(judgedTls.ours);
  const ref = find(judgedTls.reference);
  const rival = find(judgedTls.rival);
  const alt = find(judgedTls.alt);
  if (!ours || !ref) return `_${ours ? "HAProxy TLS" : "keepalive-proxy TLS"} was not in this run: no TLS targets judged._`;
  const med = (xs) => median(xs);
  const ratio = (a, b, scenario, fn) => {
    const r = a && b ? res.paired(a.name, b.name, scenario, fn) : [];
    return { m: med(r), text: r.length ? `${fmt(med(r), 2)}×${spread(r, 2)}` : "–" };
  };
  const value = (t, scenario, fn, digits, unit) => (t ? withUnit(med(res.values(t.name, scenario, fn)), digits, unit) : "–");
  const rows = [];
  const judgedRow = (what, scenario, fn, unit) => {
    const vsRef = ratio(ours, ref, scenario, fn);
    const vsRival = ratio(ours, rival, scenario, fn);
    const altR = ratio(alt, ref, scenario, fn);
    rows.push([
      what,
      value(ours, scenario, fn, 0, unit),
      value(ref, scenario, fn, 0, unit),
      value(rival, scenario, fn, 0, unit),
      vsRef.text,
      verdict(vsRef.m === undefined ? undefined : vsRef.m >= 0.8),
      vsRival.text,
      verdict(vsRival.m === undefined ? undefined : vsRival.m > 1),
      altR.m === undefined ? "–" : `${fmt(altR.m, 2)}×`,
    ]);
  };
  judgedRow("new TLS sessions/s, 32 parallel", "tls-cps", metric.cps, "/s");
  judgedRow("bulk MB/s through TLS, client → upstream", "tls-bulk-up", metric.mbps, "MB/s");
  judgedRow("bulk MB/s through TLS, upstream → client", "tls-bulk-down", metric.mbps, "MB/s");
  const reportedRow = (what, scenario, fn, digits, unit) => {
    const altR = ratio(alt, ref, scenario, fn);
    rows.push([
      what,
      value(ours, scenario, fn, digits, unit),
      value(ref, scenario, fn, digits, unit),
      value(rival, scenario, fn, digits, unit),
      ratio(ours, ref, scenario, fn).text,
      "reported",
      ratio(ours, rival, scenario, fn).text,
      "reported",
      altR.m === undefined ? "–" : `${fmt(altR.m, 2)}×`,
    ]);
  };
  reportedRow("proxy CPU per new TLS session", "tls-cps", metric.cpuUsPerConn, 0, "µs");
  const held = Math.max(0, ...res.values(ours.name, "tls-idle", (r) => r.load.conns));
  reportedRow(`RSS per idle TLS session${held ? ` (${fmt(held, 0)} held)` : ""}`, "tls-idle", metric.rssKiBPerConn, 1, "KiB");
  {
    const tlsRuns = (t) => res.runs.filter((r) => t && r.target === t.name && r.scenario.startsWith("tls-"));
    const count = (t) => (t ? String(tlsRuns(t).reduce((n, r) => n + failuresOf(r), 0)) : "–");
    const n = tlsRuns(ours).reduce((k, r) => k + failuresOf(r), 0);
    const ok = tlsRuns(ours).length ? n === 0 : undefined;
    rows.push(["failed connections, every TLS scenario and round", count(ours), count(ref), count(rival), "–", verdict(ok), "–", verdict(ok), alt ? count(alt) : "–"]);
  }
  const header = ["TLS 1.3 termination", ours.label, ref.label, rival?.label ?? "stunnel (not run)", "÷ HAProxy, same round", "goal ≥ 0.8×", "÷ stunnel, same round", "goal: ahead"];
  if (!alt) return table(header, rows.map((r) => r.slice(0, -1)));
  return table([...header, `${alt.label} ÷ HAProxy`], rows);
}

/** One line per TLS target: sessions/s, CPU per session and per GB each way, memory per idle TLS session. */
function tlsCostSection(res, data) {
  const rows = data.meta.targets
    .filter((t) => t.tls)
    .map((t) => [
      t.group === "ours" ? `**${t.label}**` : t.label,
      fmt(median(res.values(t.name, "tls-cps", (r) => r.processes)), 0),
      fmt(median(res.values(t.name, "tls-cps", metric.cps)), 0),
      fmt(median(res.values(t.name, "tls-cps", metric.cpuUsPerConn)), 0),
      fmt(median(res.values(t.name, "tls-bulk-up", metric.cpuSPerGB)), 2),
      fmt(median(res.values(t.name, "tls-bulk-down", metric.cpuSPerGB)), 2),
      fmt(median(res.values(t.name, "tls-idle", metric.rssKiBPerConn)), 1),
      fmt(median(res.values(t.name, "tls-idle", metric.pssKiBPerConn)), 1),
      String(res.runs.filter((r) => r.target === t.name).reduce((n, r) => n + failuresOf(r), 0)),
    ]);
  return table(
    ["TLS target", "processes", "new TLS sessions/s", "CPU µs per TLS session", "CPU s/GB client → upstream", "CPU s/GB upstream → client", "RSS KiB per idle TLS session", "PSS KiB per idle TLS session", "failed, all TLS scenarios and rounds"],
    rows,
  );
}

/**
 * One line per target: the proxy's CPU per unit of work in each scenario and
 * its resident memory per idle connection, summed over all its processes.
 */
function costSection(res, data) {
  const proxies = data.meta.targets.filter((t) => t.group !== "direct" && !t.tls);
  const idleConns = (t) => res.values(t.name, "idle", (r) => r.load.conns);
  const processes = (t) => {
    const idle = res.values(t.name, "idle", (r) => r.memoryAfter?.processes);
    const timed = res.values(t.name, "rr50", (r) => r.processes);
    const v = idle.length ? idle : timed;
    const sockets = res.values(t.name, "rr50", (r) => r.listenSockets).concat(res.values(t.name, "idle", (r) => r.listenSockets));
    return `${v.length ? fmt(median(v), 0) : "–"}${sockets.length ? ` / ${fmt(Math.max(...sockets), 0)}` : ""}`;
  };
  const failures = (t) => res.runs.filter((r) => r.target === t.name).reduce((n, r) => n + failuresOf(r), 0);
  if (proxies.length === 0) return "_No plaintext proxy in this run._";
  const rows = proxies.map((t) => [
    t.group === "ours" ? `**${t.label}**` : t.label,
    processes(t),
    fmt(median(res.values(t.name, "cps", metric.cpuUsPerConn)), 0),
    fmt(median(res.values(t.name, "rr50", metric.cpuUsPerTx)), 1),
    fmt(median(res.values(t.name, "bulk-up", metric.cpuSPerGB)), 2),
    fmt(median(res.values(t.name, "bulk-down", metric.cpuSPerGB)), 2),
    `${fmt(median(res.values(t.name, "idle", metric.rssKiBPerConn)), 2)}${idleConns(t).length ? ` (${fmt(Math.max(...idleConns(t)), 0)})` : ""}`,
    fmt(median(res.values(t.name, "idle", metric.pssKiBPerConn)), 2),
    String(failures(t)),
  ]);
  return table(
    ["target", "processes / listening sockets", "CPU µs per new connection", "CPU µs per transaction (50 conns)", "CPU s/GB client → upstream", "CPU s/GB upstream → client", "RSS KiB per idle connection (connections held)", "PSS KiB per idle connection", "failed, all scenarios and rounds"],
    rows,
  );
}

/**
 * Where a multi-process target's memory went in the idle scenario: the RSS
 * growth of each of its processes (supervisor or master first), from the
 * first round in which it ran; shows how connections spread over workers and
 * whether the supervisor holds anything per connection.
 */
function perProcessLines(res, targets) {
  const lines = [];
  for (const t of targets) {
    const run = res.okRuns(t.name, "idle").find((r) => r.memoryBefore?.perProcess && r.memoryAfter?.perProcess);
    if (!run || run.memoryAfter.processes < 2 || run.memoryAfter.processes > 16) continue;
    const before = new Map(run.memoryBefore.perProcess.map((p) => [p.pid, p.rssKiB]));
    const parts = [...run.memoryAfter.perProcess]
      .sort((a, b) => Number(b.leader) - Number(a.leader))
      .map((p) => `${p.leader ? "supervisor/master" : `pid ${p.pid}`} ${fmt(p.rssKiB / 1024, 1)} MiB (${before.has(p.pid) ? `+${fmt((p.rssKiB - before.get(p.pid)) / 1024, 1)}` : "new"})`);
    lines.push(`- ${t.label}, round ${run.round + 1}, RSS by process after opening (growth): ${parts.join(", ")}.`);
  }
  return lines;
}

/** The targets a run left out because the build lacked a flag they need. */
function skippedLines(data) {
  return (data.meta.skipped ?? []).map((s) => `- Not measured: ${s.label} (\`${s.name}\`): ${s.reason}.`);
}

function machineSection(data) {
  const m = data.meta.machine;
  const wall = data.rounds.reduce((n, r) => n + (r.wallS ?? 0), 0);
  const foreign = data.rounds.reduce((n, r) => n + (r.otherCpuS ?? 0), 0);
  const rows = [
    ["date", data.meta.date],
    ["machine", `${m.nproc} CPUs (nproc), ${m.cpuModel}, ${m.memoryGiB} GiB, Linux ${m.kernel}`],
    ["keepalive-proxy", `${m.versions.keepaliveProxy}, commit ${m.gitCommit}${m.srcModified ? " with uncommitted changes in src/" : ""}`],
    ["Node", m.versions.node],
    ["HAProxy", m.versions.haproxy],
    ["nginx", m.versions.nginx],
    ["socat", m.versions.socat],
    ["load generator", `bench/kpbench.c, ${m.versions.gcc} -O2`],
    ["rounds × duration", `${data.meta.rounds} × ${data.meta.durationS} s per measurement (+${data.meta.warmupS} s uncounted warm-up for request/response)${data.meta.quick ? " — quick mode, a smoke test, not a result" : ""}`],
    ["load average", `start ${data.meta.loadavgStart.join(" ")}, end ${(data.meta.loadavgEnd ?? []).join(" ")} (socat's thousands of short-lived children in the idle scenario inflate it by themselves)`],
    [
      "CPU used by other processes during the rounds",
      wall ? `${fmt(foreign, 1)} CPU-s of ${fmt(wall * m.nproc, 0)} available (${fmt((100 * foreign) / (wall * m.nproc), 1)} %); per round below` : "–",
    ],
    ["idle connections", `${fmt(data.meta.idleConns, 0)}${data.meta.idleConns < 10_000 ? ` (not 10,000: the hard RLIMIT_NOFILE here is ${data.meta.fdLimit} and cannot be raised, and a single-process proxy needs two fds per proxied connection)` : ""}`],
  ];
  // A round in which other processes took more than a tenth of the machine is
  // flagged: its figures are in the medians all the same, never dropped.
  const share = (r) => (r.otherCpuS ?? 0) / ((r.wallS || 1) * m.nproc);
  const perRound = table(
    ["round", "target order", "wall s", "load avg at start", "other processes' CPU-s", "share of the machine", "top other processes"],
    data.rounds.map((r) => [
      String(r.round + 1),
      r.order.join(" "),
      fmt(r.wallS, 0),
      r.loadavgStart.join(" "),
      fmt(r.otherCpuS, 1),
      `${fmt(100 * share(r), 0)} %${share(r) > 0.1 ? " **noisy**" : ""}`,
      (r.otherTop ?? []).map((t) => `${t.name} ${fmt(t.cpuS, 1)} s`).join(", ") || "–",
    ]),
    { left: true },
  );
  const noisy = data.rounds.filter((r) => share(r) > 0.1).length;
  const noisyNote = noisy === 0 ? "No round shared the machine with more than 10 % of other work." : `**${noisy} of ${data.rounds.length} rounds shared the machine with more than 10 % of other work** (other sessions' test suites); their figures are kept in the medians and widen the spreads.`;
  return `${table(["", ""], rows, { left: true })}\n\n${perRound}\n\n${noisyNote} A process's CPU includes that of children it reaped during the round, so a shell whose test run ended then is charged with all of it.`;
}

function notesSection(res, data) {
  const lines = [];
  const lg = res.values("direct", "rr50", metric.loadgenCpuShare);
  const sv = res.values("direct", "rr50", metric.serverCpuShare);
  if (lg.length) lines.push(`- On the direct 50-connection run the load generator used ${fmt(100 * median(lg), 0)} % of one core and the upstream server ${fmt(100 * median(sv), 0)} %; through a proxy all three share the 2 cores, so the ratios to direct are ratios of whole-machine throughput, not of the proxy alone.`);
  const direct = res.values("direct", "rr50", metric.tps);
  if (direct.length > 1) lines.push(`- The VM reports no steal time, yet the direct connection's own 50-connection figure ranged ${fmt(Math.min(...direct), 0)}–${fmt(Math.max(...direct), 0)} tx/s across rounds (the host's other tenants): compare within a round, as the ratios do, not across runs.`);
  const failed = res.runs.filter((r) => !r.ok);
  for (const r of failed.slice(0, 20)) lines.push(`- Run failed: round ${r.round + 1}, ${r.target}, ${r.scenario}: ${r.error.split("\n")[0]}`);
  for (const n of (data.targetNotes ?? []).slice(0, 10)) lines.push(`- ${n.target} (round ${n.round + 1}) said: \`${n.lines[0].slice(0, 200)}\``);
  return lines.join("\n");
}

/**
 * The short form for the README, between its `<!-- bench:targets:start -->`
 * and `<!-- bench:targets:end -->` markers: provenance and the targets table.
 */
export function renderReadmeSummary(data) {
  const res = new Results(data);
  const m = data.meta.machine;
  const noisy = data.rounds.filter((r) => (r.otherCpuS ?? 0) / ((r.wallS || 1) * m.nproc) > 0.1).length;
  return [
    `Measured ${data.meta.date.slice(0, 10)} (keepalive-proxy commit ${m.gitCommit}${m.srcModified ? " with uncommitted changes in src/" : ""}) on ${m.nproc} CPUs (${m.cpuModel}), Linux ${m.kernel}, Node ${m.versions.node}, ${m.versions.haproxy}; ${data.meta.rounds} rounds of ${data.meta.durationS} s per measurement${noisy ? `, ${noisy} of them shared with other work` : ""}. Every scenario and target, with spreads and CPU per transaction: [bench/RESULTS.md](bench/RESULTS.md).`,
    "",
    targetsSection(res, data),
    "",
    "What each target costs, summed over all its processes (CPU from /proc/PID/stat, memory as VmRSS after opening the idle connections minus at start):",
    "",
    costSection(res, data),
    ...(hasTls(data) ? ["", tlsIntro(data), "", tlsSection(res, data), "", tlsCostSection(res, data)] : []),
    ...(skippedLines(data).length ? ["", ...skippedLines(data)] : []),
  ].join("\n");
}

/** What the TLS figures are, in one sentence. */
function tlsIntro(data) {
  const m = data.meta.machine;
  return `TLS termination (issue 13): TLS 1.3 from the load generator, one ECDSA P-256 certificate made for the run and served by every TLS target, a full handshake per session (no resumption), plaintext to the same upstream server; ${m.versions.openssl ?? "OpenSSL"} for HAProxy and stunnel (${m.versions.stunnel ?? "stunnel"}), Node's own OpenSSL for keepalive-proxy. Judged on same-round ratios:`;
}

/** The whole RESULTS.md. */
export function renderReport(data) {
  const res = new Results(data);
  const targets = data.meta.targets;
  const parts = [
    "# keepalive-proxy: benchmark results",
    "",
    "Regenerated by `npm run bench` (`bash bench/run.sh`); the raw figures of every run of every round are in `bench/results/latest.json`. Method: every round runs every scenario on every target, the targets in an order rotated by one each round; a cell is the **median over rounds [min–max]**; \"× direct\" is the median of the per-round ratios to the direct connection measured in the same round (and \"added\" the median of per-round differences). Proxy CPU is utime+stime of the proxy's whole process tree (supervisor and workers, master and workers, threads) from /proc/PID/stat; memory is VmRSS (and Pss) summed over all its processes. Every byte that comes back is checked by the load generator (or, for uploads, by the sink, which reports back).",
    "",
    "## Machine and run",
    "",
    machineSection(data),
    "",
    "## Targets: keepalive-proxy against HAProxy (default threads)",
    "",
    "Each comparison is made within a round (same minute, same machine load) and the median over rounds is judged.",
    "",
    targetsSection(res, data),
    "",
    "## What each target costs",
    "",
    "Medians over rounds; CPU is the proxy's own (every process of it), per unit of work of each scenario; memory per idle connection is (VmRSS after opening − VmRSS at start) / connections, summed over every process of the target (a supervisor and its workers, nginx's master and workers).",
    "",
    costSection(res, data),
    "",
    ...(skippedLines(data).length ? [...skippedLines(data), ""] : []),
    ...(hasTls(data) ? ["## TLS termination: keepalive-proxy against HAProxy TLS and stunnel", "", tlsIntro(data), "", tlsSection(res, data), "", tlsCostSection(res, data), ""] : []),
  ];
  for (const scenario of data.meta.scenarios) {
    parts.push(`## ${SCENARIO_TITLES[scenario] ?? scenario}`, "", scenarioTable(res, scenario, ofKind(targets, scenario)), "");
    if (scenario === "tls-idle") {
      parts.push(
        `A TLS session counts as open once its handshake is done and one byte has gone through the proxy to the upstream and back. RSS per session is (VmRSS after opening − VmRSS just after start) / sessions, summed over the proxy's processes; stunnel holds a thread per session.`,
        "",
      );
    }
    if (scenario === "idle") {
      const notes = targets.filter((x) => x.note);
      for (const t of notes) parts.push(`- ${t.label}: ${t.note}.`);
      if (notes.length) parts.push("");
      const perProcess = perProcessLines(res, targets);
      if (perProcess.length) parts.push(...perProcess, "");
      parts.push(
        `A connection counts as open once one byte has gone through the proxy to the upstream and back. RSS per connection is (VmRSS after opening − VmRSS just after start) / connections, summed over the proxy's processes; for socat, which forks a process per connection, VmRSS counts shared pages once per process and Pss is the fairer figure. \"working after\" is the worst round's count of connections that still echoed a byte after the memory was read.`,
        "",
      );
    }
  }
  const notes = notesSection(res, data);
  if (notes) parts.push("## Notes", "", notes, "");
  return `${parts.join("\n")}`;
}
