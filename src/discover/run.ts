import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import type { SocketOptions } from "../net/socket-options.js";
import { formatHostPort, type HostPort } from "../util/host-port.js";
import { refinementLadder } from "./ladder.js";
import { type OpenedRung, openRung, type ProbeTiming, type RungDeps, type RungOutcome, type RungPass, RungResult } from "./rung.js";

/** What one discovery run measures. */
export interface DiscoverPlan {
  /** The upstream's written addresses (one for --upstream, all of a listener's); each name is resolved. */
  readonly upstreams: readonly HostPort[];
  /** Idle times of the first pass, whole seconds, ascending. */
  readonly ladderS: readonly number[];
  /** Whether a second, finer pass narrows the gap between the longest survivor and the shortest casualty. */
  readonly refine: boolean;
  readonly connectTimeoutMs: number;
  readonly probe: ProbeTiming;
}

/** One resolved address and its rungs. */
export interface AddressReport {
  /** The written upstream it was resolved from. */
  readonly upstream: string;
  /** ip:port */
  readonly address: string;
  /** False when its first connection could not be opened; then it has no rungs. */
  readonly reachable: boolean;
  /** Why it was unreachable (ECONNREFUSED, ETIMEDOUT, …). */
  readonly errno: string | undefined;
  /** Ascending by idle time, both passes. */
  readonly rungs: readonly RungOutcome[];
}

/** Every resolved address of the upstreams, and the names that did not resolve. */
export interface DiscoverReport {
  readonly addresses: readonly AddressReport[];
  /** Written upstreams whose name did not resolve, with the error code (ENOTFOUND, EAI_AGAIN). */
  readonly unresolved: readonly { readonly upstream: string; readonly code: string }[];
}

/** A rung still waiting for its answer, for a progress line. */
export interface PendingRung {
  readonly address: string;
  readonly idleS: number;
  readonly pass: RungPass;
  /** performance.now() at its connect. */
  readonly startedAt: number;
}

/** What a run needs from its caller. */
export interface DiscoverDeps {
  readonly socketOptions: SocketOptions;
  /** Called whenever the set of waiting rungs changes. */
  readonly onPending?: (pending: readonly PendingRung[]) => void;
}

/**
 * Measures every resolved address of the upstream at once, each with the
 * whole ladder in parallel, then a refinement pass per address. Opens exactly
 * one connection per rung and never writes a byte. Never rejects on network
 * failures: they are in the report.
 */
export async function discover(plan: DiscoverPlan, deps: DiscoverDeps): Promise<DiscoverReport> {
  const pending = new Set<PendingRung>();
  const changed = (): void => deps.onPending?.([...pending]);
  const tracker: Tracker = {
    add: (p) => {
      pending.add(p);
      changed();
    },
    remove: (p) => {
      pending.delete(p);
      changed();
    },
  };
  const rungDeps: RungDeps = { socketOptions: deps.socketOptions, probe: plan.probe, connectTimeoutMs: plan.connectTimeoutMs };
  const unresolved: { upstream: string; code: string }[] = [];
  const perUpstream = await Promise.all(
    plan.upstreams.map(async (target) => {
      const upstream = formatHostPort(target);
      let ips: string[];
      try {
        ips = await resolveAll(target.host);
      } catch (error) {
        unresolved.push({ upstream, code: (error as NodeJS.ErrnoException).code ?? String(error) });
        return [];
      }
      return Promise.all(ips.map((ip) => measureAddress(upstream, { host: ip, port: target.port }, plan, rungDeps, tracker)));
    }),
  );
  return { addresses: perUpstream.flat(), unresolved };
}

/** Every address of the host (an IP literal is its own), IPv4 and IPv6, in resolver order. */
async function resolveAll(host: string): Promise<string[]> {
  if (isIP(host) !== 0) return [host];
  const found = await lookup(host, { all: true, verbatim: true });
  return [...new Set(found.map((a) => a.address))];
}

interface Tracker {
  add(p: PendingRung): void;
  remove(p: PendingRung): void;
}

/**
 * One address: its first rung alone, so an unreachable upstream is known
 * after one connect attempt rather than one per rung; then the rest of the
 * ladder; then, as soon as every rung below the shortest casualty has
 * answered, the refinement rungs between it and the longest survivor.
 */
async function measureAddress(upstream: string, target: HostPort, plan: DiscoverPlan, deps: RungDeps, tracker: Tracker): Promise<AddressReport> {
  const address = formatHostPort(target);
  const { host: ip, port } = target;
  const [first, ...rest] = plan.ladderS;
  if (first === undefined) return { upstream, address, reachable: true, errno: undefined, rungs: [] };
  const opened = await openRung(ip, port, first, "ladder", deps);
  if (!opened.ok) return { upstream, address, reachable: false, errno: opened.outcome.errno, rungs: [] };
  const outcomes: RungOutcome[] = [];
  let refinement: Promise<unknown> = Promise.resolve();
  let refined = !plan.refine;
  const track = async (idleS: number, pass: RungPass, opening: Promise<OpenedRung>): Promise<void> => {
    const waiting: PendingRung = { address, idleS, pass, startedAt: performance.now() };
    tracker.add(waiting);
    try {
      const rung = await opening;
      outcomes.push(rung.ok ? await rung.outcome : rung.outcome);
    } finally {
      tracker.remove(waiting);
    }
    if (refined) return;
    const gap = decidedGap(plan.ladderS, outcomes);
    if (gap === undefined) return;
    refined = true;
    const tried = new Set(plan.ladderS);
    const rungs = refinementLadder(gap.survivedS, gap.forgottenS, tried);
    refinement = Promise.all(rungs.map((s) => track(s, "refine", openRung(ip, port, s, "refine", deps))));
  };
  await Promise.all([track(first, "ladder", Promise.resolve(opened)), ...rest.map((s) => track(s, "ladder", openRung(ip, port, s, "ladder", deps)))]);
  await refinement;
  return { upstream, address, reachable: true, errno: undefined, rungs: outcomes.sort((a, b) => a.idleS - b.idleS) };
}

/**
 * The first pass's bracket once it is settled: the shortest casualty, and
 * the longest survivor below it (0 when none), when every ladder rung below
 * the casualty has answered. Undefined while that is not known yet.
 */
function decidedGap(ladderS: readonly number[], outcomes: readonly RungOutcome[]): { survivedS: number; forgottenS: number } | undefined {
  const casualties = outcomes.filter((o) => o.result === RungResult.forgotten || o.result === RungResult.reset).map((o) => o.idleS);
  if (casualties.length === 0) return undefined;
  const forgottenS = Math.min(...casualties);
  const decided = new Set(outcomes.map((o) => o.idleS));
  if (ladderS.some((s) => s < forgottenS && !decided.has(s))) return undefined;
  const survivors = outcomes.filter((o) => o.result === RungResult.survived && o.idleS < forgottenS).map((o) => o.idleS);
  return { survivedS: survivors.length > 0 ? Math.max(...survivors) : 0, forgottenS };
}
