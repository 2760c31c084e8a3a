import type { MetricObjectWithValues, MetricValue } from "prom-client";
import type { Config } from "../config/schema.js";
import type { ReloadOutcome } from "../lifecycle/reload-outcome.js";

/**
 * The messages between the supervisor and its worker processes, over the
 * fork IPC channel (structured clone). Requests that expect an answer carry an
 * `id` the answer repeats. Nothing here is sent per connection except the
 * slot leases, and those only when a worker's lease runs out or overflows.
 */

/** What a worker needs to start or reload: the config, and the ports reserved for port-0 listeners. */
export interface WorkerConfig {
  readonly config: Config;
  readonly reservedPorts: Readonly<Record<string, number>>;
}

/** Limits a worker's leased budgets follow: key → limit (0 = none) and how many unused slots to keep. */
export type SlotLimits = Readonly<Record<string, { readonly max: number; readonly keep: number }>>;

export type ToWorker =
  | ({ readonly t: "start"; readonly id: number; readonly limits: SlotLimits } & WorkerConfig)
  | ({ readonly t: "reload"; readonly id: number; readonly limits: SlotLimits } & WorkerConfig)
  | { readonly t: "drain"; readonly drainMs: number }
  | { readonly t: "abort-all" }
  | { readonly t: "metrics"; readonly id: number }
  | { readonly t: "connections"; readonly id: number; readonly limit: number; readonly listener: string | undefined }
  | { readonly t: "status"; readonly id: number; readonly limit: number; readonly listener: string | undefined }
  | { readonly t: "slots.grant"; readonly key: string; readonly n: number }
  | { readonly t: "slots.revoke"; readonly key: string; readonly id: number };

/** A worker's listeners as readiness judges them. */
export interface WorkerListeners {
  readonly accepting: readonly string[];
}

export type FromWorker =
  | ({ readonly t: "started"; readonly id: number; readonly ok: true } & WorkerListeners)
  | { readonly t: "started"; readonly id: number; readonly ok: false; readonly error: string; readonly code: string | undefined }
  | ({ readonly t: "reloaded"; readonly id: number; readonly ok: true; readonly outcome: ReloadOutcome; readonly liveSessions: number } & WorkerListeners)
  | { readonly t: "reloaded"; readonly id: number; readonly ok: false; readonly error: string }
  | { readonly t: "drained"; readonly drained: number; readonly reset: number }
  | { readonly t: "metrics"; readonly id: number; readonly metrics: MetricObjectWithValues<MetricValue<string>>[] }
  | { readonly t: "connections"; readonly id: number; readonly json: string }
  | { readonly t: "status"; readonly id: number; readonly json: string }
  | { readonly t: "slots.need"; readonly key: string }
  | { readonly t: "slots.return"; readonly key: string; readonly n: number; readonly revokeId?: number };
