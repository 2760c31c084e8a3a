import type { ConnectionsReport, ConnectionView } from "../admin/connections.js";

/** One worker's /connections body. */
export interface WorkerListing {
  readonly worker: number;
  readonly json: string;
}

/** A connection as the supervisor lists it: which worker holds it. */
export type WorkerConnectionView = ConnectionView & { readonly worker: number };

/**
 * Merges the workers' listings into one report: totals summed, entries
 * tagged with their worker and cut to `limit`, oldest first. A listing that
 * does not parse (a worker that died mid-answer) counts as empty. Pure.
 */
export function mergeConnectionListings(listings: readonly WorkerListing[], limit: number): ConnectionsReport & { readonly connections: WorkerConnectionView[] } {
  let total = 0;
  const all: WorkerConnectionView[] = [];
  for (const { worker, json } of listings) {
    let report: ConnectionsReport;
    try {
      report = JSON.parse(json) as ConnectionsReport;
    } catch {
      continue;
    }
    total += report.total;
    for (const c of report.connections) all.push({ ...c, worker });
  }
  all.sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  const connections = all.slice(0, limit);
  return { total, returned: connections.length, limit, truncated: total > connections.length, connections };
}
