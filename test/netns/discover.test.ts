// `keepalive-proxy discover` between real network namespaces: a prober
// namespace runs the CLI, an upstream namespace runs a peer that records
// every byte it receives, and between them a router that masquerades and
// forgets idle flows after ESTABLISHED_TIMEOUT_S, either dropping what it no
// longer knows (strict conntrack) or mapping it anew so the upstream answers
// with a reset (nf_conntrack_tcp_loose=1). The scenarios build their own
// namespaces and run at once: the suite takes as long as the strict NAT run
// with its refinement pass (about 25 s).

import { describe, test } from "vitest";
import { DEFAULT_PROBE_TIMING } from "../../src/discover/rung.js";
import { addRoute, exec, Lab, type Namespace, natRouter, type NatRouterOptions, netnsSupport } from "../helpers/netns.js";
import type { PeerProcess } from "../helpers/peer-process.js";
import { PeerProcess as Peer } from "../helpers/peer-process.js";
import { CLI } from "../helpers/run-cli.js";
import { runTool } from "../helpers/tools.js";

const support = netnsSupport();
if (!support.ok) console.warn(`skipping the discover netns tests: ${support.reason}`);

/** How long the router's conntrack keeps an idle established flow, as the issue sets it. */
const ESTABLISHED_TIMEOUT_S = 6;
/** Two rungs below the router's memory, two above it. */
const LADDER_S = [2, 4, 9, 12] as const;
const LADDER = LADDER_S.map((s) => `${s}s`).join(",");
/** A forgotten rung is decided this long after T: its unanswered probes run out. */
const PROBE_WINDOW_S = DEFAULT_PROBE_TIMING.intervalS * DEFAULT_PROBE_TIMING.count;
/** Process start-up, namespace set-up and scheduling on a loaded machine. */
const SLACK_MS = 15_000;
/** The longest a run can take: the longest rung, then a refinement pass started when the shortest casualty is decided. */
const RUN_BOUND_MS = (Math.max(...LADDER_S) + PROBE_WINDOW_S) * 1000 + (LADDER_S[2] + PROBE_WINDOW_S) * 1000 + SLACK_MS;

interface Rung {
  readonly idleS: number;
  readonly pass: "ladder" | "refine";
  readonly result: string;
  readonly errno: string | null;
}

interface JsonReport {
  readonly addresses: readonly { readonly address: string; readonly reachable: boolean; readonly rungs: readonly Rung[] }[];
  readonly verdict: {
    readonly kind: string;
    readonly survivedS: number | null;
    readonly forgottenS: number | null;
    readonly recommendedIdleS: number | null;
    readonly text: string;
  };
}

/** prober ⇄ [router ⇄] upstream. */
interface Path {
  readonly prober: Namespace;
  readonly upstream: Namespace;
  readonly upstreamIp: string;
}

type Router = NatRouterOptions["mode"];

/**
 * prober ⇄ router ⇄ upstream, the router masquerading toward the upstream
 * like the NAT test's router (test/helpers/netns.ts natChain). `strict`:
 * nf_conntrack_tcp_loose=0 and mid-stream segments of unknown flows dropped,
 * so a probe after the entry expired goes nowhere. `loose`: such a segment
 * creates a new entry on a fresh random port (fully-random), which the
 * upstream does not know, so it answers with a reset that the new entry
 * carries back. Anything addressed to the router itself is dropped, so its
 * own stack never answers for the upstream.
 */
async function natPath(lab: Lab, mode: Router): Promise<Path> {
  const [prober, router, upstream] = await Promise.all([lab.namespace("prober"), lab.namespace("router"), lab.namespace("upstream")]);
  const [front, back] = await Promise.all([lab.link(prober, router), lab.link(router, upstream)]);
  await addRoute(prober, back.subnet, front.b.ip);
  await natRouter(router, back.a.dev, { mode, establishedTimeoutS: ESTABLISHED_TIMEOUT_S });
  return { prober, upstream, upstreamIp: back.b.ip };
}

/** prober ⇄ upstream on one link: nothing in between to forget a flow. */
async function directPath(lab: Lab): Promise<Path> {
  const [prober, upstream] = await Promise.all([lab.namespace("prober"), lab.namespace("upstream")]);
  const link = await lab.link(prober, upstream);
  return { prober, upstream, upstreamIp: link.b.ip };
}

/** A peer in the upstream namespace listening on any port: the upstream application. */
async function startUpstream(lab: Lab, path: Path): Promise<{ peer: PeerProcess; port: number }> {
  const peer = await Peer.start(path.upstream, lab);
  return { peer, port: await peer.listen(path.upstreamIp) };
}

/** Runs the built CLI in the prober namespace, with this Node. */
async function discover(path: Path, args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  const r = await runTool(["ip", "netns", "exec", path.prober.name, process.execPath, CLI, "discover", ...args]);
  return { code: r.code, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - started };
}

/** One table row of the text report: idle, pass, result. */
const ROW = /^ {2}(\d+[smh])\s+(ladder|refine)\s+(.+?)\s+\d+\.\d+s$/;

/** The rows of the text report's tables, as idle seconds → result text. */
function tableRows(stdout: string): Map<number, { pass: string; result: string }> {
  const rows = new Map<number, { pass: string; result: string }>();
  for (const line of stdout.split("\n")) {
    const m = ROW.exec(line);
    if (m?.[1] === undefined || m[2] === undefined || m[3] === undefined) continue;
    const unit = { s: 1, m: 60, h: 3600 }[m[1].slice(-1) as "s" | "m" | "h"];
    rows.set(Number(m[1].slice(0, -1)) * unit, { pass: m[2], result: m[3] });
  }
  return rows;
}

/**
 * What the upstream application saw: how many connections it accepted, and
 * how many bytes arrived on any of them (data events, and the totals in
 * close events).
 */
function upstreamSaw(peer: PeerProcess): { accepted: number; bytes: number } {
  let accepted = 0;
  let bytes = 0;
  for (const e of peer.events.items) {
    if (e.ev === "accepted") accepted++;
    if (e.ev === "data") bytes += e.bytes ?? 0;
    if (e.ev === "close") bytes += Number(e.received ?? 0);
  }
  return { accepted, bytes };
}

type OnFinished = (fn: () => Promise<void>) => void;

function openLab(onTestFinished: OnFinished): Lab {
  const lab = new Lab();
  onTestFinished(() => lab.destroy());
  return lab;
}

describe.skipIf(!support.ok).concurrent("discover between network namespaces", () => {
  test(`reports ${LADDER} as survived below a strict NAT's ${ESTABLISHED_TIMEOUT_S} s memory and forgotten above it, and recommends an idle below it`, {
    timeout: RUN_BOUND_MS + SLACK_MS,
  }, async ({ expect, onTestFinished }) => {
    const lab = openLab(onTestFinished);
    const path = await natPath(lab, "strict");
    const { peer, port } = await startUpstream(lab, path);

    const run = await discover(path, ["--upstream", `${path.upstreamIp}:${port}`, "--ladder", LADDER]);
    console.log(`[discover] strict NAT (${ESTABLISHED_TIMEOUT_S} s), ${run.ms} ms, exit ${run.code}:\n${run.stdout}${run.stderr}`);

    expect(run.code).toBe(0);
    const rows = tableRows(run.stdout);
    for (const s of LADDER_S) {
      expect(rows.get(s), `${s}s rung`).toEqual({ pass: "ladder", result: s < ESTABLISHED_TIMEOUT_S ? "survived" : "forgotten (timeout)" });
    }
    // The refinement rungs lie strictly between the longest survivor and the shortest casualty.
    const refined = [...rows].filter(([, r]) => r.pass === "refine");
    expect(refined.length).toBeGreaterThan(0);
    for (const [s, r] of refined) {
      const expected = s < ESTABLISHED_TIMEOUT_S ? ["survived"] : s > ESTABLISHED_TIMEOUT_S ? ["forgotten (timeout)"] : ["survived", "forgotten (timeout)"];
      expect(expected, `${s}s refinement rung: ${r.result}`).toContain(r.result);
    }
    const verdict = /^verdict: the path forgot an idle flow after between (\d+)s and (\d+)s; recommended keepalive idle: (\d+)s$/m.exec(run.stdout);
    expect(verdict, run.stdout).not.toBeNull();
    const [survived, forgotten, recommended] = (verdict ?? []).slice(1).map(Number) as [number, number, number];
    expect(survived).toBeLessThanOrEqual(ESTABLISHED_TIMEOUT_S);
    expect(forgotten).toBeGreaterThanOrEqual(ESTABLISHED_TIMEOUT_S);
    expect(recommended).toBeGreaterThanOrEqual(1);
    expect(recommended).toBeLessThan(ESTABLISHED_TIMEOUT_S);

    expect(upstreamSaw(peer)).toEqual({ accepted: rows.size, bytes: 0 });
  });

  test("reports the rungs above the NAT's memory as reset when the NAT maps a forgotten flow anew (nf_conntrack_tcp_loose=1)", {
    timeout: RUN_BOUND_MS + SLACK_MS,
  }, async ({ expect, onTestFinished }) => {
    const lab = openLab(onTestFinished);
    const path = await natPath(lab, "loose");
    const { peer, port } = await startUpstream(lab, path);

    const run = await discover(path, ["--upstream", `${path.upstreamIp}:${port}`, "--ladder", LADDER, "--json"]);
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as JsonReport;
    const rungs = report.addresses[0]?.rungs ?? [];
    for (const s of LADDER_S) {
      const rung = rungs.find((r) => r.idleS === s && r.pass === "ladder");
      expect(rung, `${s}s rung`).toMatchObject(s < ESTABLISHED_TIMEOUT_S ? { result: "survived" } : { result: "reset", errno: "ECONNRESET" });
    }
    expect(report.verdict.kind).toBe("forgot");
    expect(report.verdict.recommendedIdleS).toBeGreaterThanOrEqual(1);
    expect(report.verdict.recommendedIdleS).toBeLessThan(ESTABLISHED_TIMEOUT_S);

    expect(upstreamSaw(peer)).toEqual({ accepted: rungs.length, bytes: 0 });
  });

  test("reports every rung survived, and says so in the verdict, when nothing on the path forgets", {
    timeout: RUN_BOUND_MS + SLACK_MS,
  }, async ({ expect, onTestFinished }) => {
    const lab = openLab(onTestFinished);
    const path = await directPath(lab);
    const { peer, port } = await startUpstream(lab, path);

    const run = await discover(path, ["--upstream", `${path.upstreamIp}:${port}`, "--ladder", LADDER]);
    expect(run.code, run.stderr).toBe(0);
    const rows = tableRows(run.stdout);
    expect([...rows]).toEqual(LADDER_S.map((s) => [s, { pass: "ladder", result: "survived" }]));
    expect(run.stdout).toMatch(new RegExp(`^verdict: no idle timeout up to ${Math.max(...LADDER_S)}s; `, "m"));

    expect(upstreamSaw(peer)).toEqual({ accepted: LADDER_S.length, bytes: 0 });
  });

  test("exits 3 at once, before the shortest rung could be decided, when nothing listens on the upstream port", {
    timeout: 30_000,
  }, async ({ expect, onTestFinished }) => {
    const lab = openLab(onTestFinished);
    const path = await directPath(lab);
    const { peer, port } = await startUpstream(lab, path);
    // A port nothing listens on: the upstream's kernel answers the SYN with a reset.
    const closedPort = port === 65_535 ? port - 1 : port + 1;
    const shortestS = 20;

    const run = await discover(path, ["--upstream", `${path.upstreamIp}:${closedPort}`, "--ladder", `${shortestS}s,${shortestS * 2}s`]);
    expect(run.code, run.stdout + run.stderr).toBe(3);
    expect(run.ms).toBeLessThan(shortestS * 1000);
    expect(run.stdout).toContain(`${path.upstreamIp}:${closedPort}: unreachable (ECONNREFUSED)`);
    expect(upstreamSaw(peer)).toEqual({ accepted: 0, bytes: 0 });
    // The upstream host is there; only that port is closed.
    const { stdout } = await exec(path.upstream, ["ss", "-Htln", `sport = :${port}`]);
    expect(stdout).toContain(`:${port}`);
  });
});
