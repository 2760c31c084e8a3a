import type { ConnectionsReport, ConnectionView } from "../admin/connections.js";

/** One worker's answer to a listing request (/connections, /status.json): its JSON text. */
export interface WorkerListing {
  readonly worker: number;
  readonly json: string;
}

/** A connection as the supervisor lists it: which worker holds it. */
export type WorkerConnectionView = ConnectionView & { readonly worker: number };

/** A merged /connections report. */
export type MergedConnections = ConnectionsReport & { readonly connections: WorkerConnectionView[] };

/**
 * Each worker's answer parsed; an answer that does not parse (a worker that
 * died mid-answer) is left out, so it counts as empty. Pure.
 */
export function parseWorkerAnswers<T>(answers: readonly WorkerListing[]): { readonly worker: number; readonly report: T }[] {
  return answers.flatMap(({ worker, json }) => {
    try {
      return [{ worker, report: JSON.parse(json) as T }];
    } catch {
      return [];
    }
  });
}

/**
 * Merges the workers' listings into one report: totals summed, entries
 * tagged with their worker and cut to `limit`, oldest first. Pure.
 */
export function mergeConnectionReports(reports: readonly { readonly worker: number; readonly report: ConnectionsReport }[], limit: number): MergedConnections {
  let total = 0;
  const all: WorkerConnectionView[] = [];
  for (const { worker, report } of reports) {
    total += report.total;
    for (const c of report.connections) all.push({ ...c, worker });
  }
  all.sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  const connections = all.slice(0, limit);
  return { total, returned: connections.length, limit, truncated: total > connections.length, connections };
}
