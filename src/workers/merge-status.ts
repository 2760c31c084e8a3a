import type { ClosedSessionView, ListenerStatus, UpstreamStatus } from "../admin/status.js";
import { CLOSED_RING_SIZE } from "../admin/status.js";
import type { ConnectionsReport } from "../admin/connections.js";
import { type MergedConnections, mergeConnectionReports, parseWorkerAnswers, type WorkerListing } from "./merge-connections.js";

/** The supervisor's /status.json: every worker's, merged. */
export interface MergedStatus {
  readonly generatedAt: string;
  readonly draining: boolean;
  readonly listeners: ListenerStatus[];
  readonly closed: ClosedSessionView[];
  readonly sessions: MergedConnections;
}

interface ParsedStatus {
  readonly draining: boolean;
  readonly listeners: ListenerStatus[];
  readonly closed: ClosedSessionView[];
  readonly sessions: ConnectionsReport;
}

const STATE_RANK: Readonly<Record<UpstreamStatus["state"], number>> = { ok: 0, failing: 1, cooldown: 2 };

/**
 * Merges the workers' reports: listeners by name (counts summed, `workers`
 * the number of workers serving it, each upstream at its worst state across
 * workers, since each worker's pool learns on its own), sessions as
 * mergeConnectionReports does, closed sessions newest first, cut to the
 * ring's size. A report that does not parse (a worker that died mid-answer)
 * counts as empty. Pure.
 */
export function mergeStatusReports(answers: readonly WorkerListing[], limit: number, draining: boolean): MergedStatus {
  const listeners = new Map<string, ListenerStatus>();
  const closed: ClosedSessionView[] = [];
  const reports = parseWorkerAnswers<ParsedStatus>(answers);
  for (const { worker, report } of reports) {
    for (const l of report.listeners) listeners.set(l.name, mergeListener(listeners.get(l.name), l));
    for (const c of report.closed) closed.push({ ...c, worker });
  }
  closed.sort((a, b) => b.closedAt.localeCompare(a.closedAt));
  return {
    generatedAt: new Date().toISOString(),
    draining,
    listeners: [...listeners.values()],
    closed: closed.slice(0, CLOSED_RING_SIZE),
    sessions: mergeConnectionReports(
      reports.map(({ worker, report }) => ({ worker, report: report.sessions })),
      limit,
    ),
  };
}

function mergeListener(a: ListenerStatus | undefined, b: ListenerStatus): ListenerStatus {
  if (a === undefined) return b;
  return {
    name: a.name,
    address: a.address ?? b.address,
    accepting: a.accepting && b.accepting,
    workers: a.workers + b.workers,
    upstreams: mergeUpstreams(a.upstreams, b.upstreams),
    active: a.active + b.active,
    accepted: a.accepted + b.accepted,
    closes: { total: sumCounts(a.closes.total, b.closes.total), last5m: sumCounts(a.closes.last5m, b.closes.last5m) },
  };
}

function mergeUpstreams(a: readonly UpstreamStatus[], b: readonly UpstreamStatus[]): UpstreamStatus[] {
  const out = new Map(a.map((u) => [u.address, u]));
  for (const u of b) {
    const seen = out.get(u.address);
    if (seen === undefined || STATE_RANK[u.state] > STATE_RANK[seen.state] || (u.state === seen.state && u.consecutiveFailures > seen.consecutiveFailures))
      out.set(u.address, u);
  }
  return [...out.values()];
}

function sumCounts(a: Readonly<Record<string, number>>, b: Readonly<Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = { ...a };
  for (const [k, n] of Object.entries(b)) out[k] = (out[k] ?? 0) + n;
  return out;
}
