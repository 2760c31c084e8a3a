import { ALL_CLOSE_REASONS, type CloseReason, type Side, sideOf } from "../proxy/session/close-reason.js";
import type { AcceptErrno, ConnectResult, OptionSide, ReloadResult } from "../proxy/hooks.js";

/**
 * The closed sets every label value comes from, at run time, so that label
 * children can be created at zero before anything happens (a scrape then shows
 * every series, and `rate()` and `increase()` work from the first event).
 * No label ever holds an address, a port or an id.
 */

/** Which way bytes went: read from one leg to be written to the other. */
export const Direction = {
  ClientToUpstream: "client_to_upstream",
  UpstreamToClient: "upstream_to_client",
} as const;
export type Direction = (typeof Direction)[keyof typeof Direction];
export const ALL_DIRECTIONS: readonly Direction[] = Object.values(Direction);

/** Every upstream connect result, in the order the docs list them. */
export const ALL_CONNECT_RESULTS = ["ok", "refused", "unreachable", "dns_failure", "timeout", "error", "cancelled"] as const satisfies readonly ConnectResult[];

/** Every reload result. */
export const ALL_RELOAD_RESULTS = ["success", "failure", "refused"] as const satisfies readonly ReloadResult[];

/** Every accept-error errno label. */
export const ALL_ACCEPT_ERRNOS = ["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM", "other"] as const satisfies readonly AcceptErrno[];

/** The sides a socket option failure is counted on. */
export const ALL_OPTION_SIDES = ["client", "upstream"] as const satisfies readonly OptionSide[];

// Compile-time proof that the run-time lists above hold every member of their
// union: adding a ConnectResult or ReloadResult without listing it here fails
// the build instead of leaving a series uncreated.
type MissingFrom<All, Listed> = Exclude<All, Listed> extends never ? true : Exclude<All, Listed>;
const connectResultsComplete: MissingFrom<ConnectResult, (typeof ALL_CONNECT_RESULTS)[number]> = true;
const reloadResultsComplete: MissingFrom<ReloadResult, (typeof ALL_RELOAD_RESULTS)[number]> = true;
void connectResultsComplete;
void reloadResultsComplete;

/** Every (side, reason) pair a session can close with: the side is the reason's prefix, so one pair per reason, not sides × reasons. */
export const ALL_CLOSE_LABELS: readonly { readonly side: Side; readonly reason: CloseReason }[] = ALL_CLOSE_REASONS.map((reason) => ({
  side: sideOf(reason),
  reason,
}));

/**
 * Upstream connect time, seconds: one TCP handshake. From 1 ms (same host) to
 * 30 s (beyond the 10 s default connect timeout).
 */
export const CONNECT_DURATION_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

const MINUTE = 60;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/**
 * Session lifetime, seconds: from a refused connect (milliseconds) to the
 * week-long sessions of legacy clients. The buckets around 2 h (the kernel's
 * default keepalive idle) and 350 s / 4 min / 5 min (common NAT and load
 * balancer idle timeouts) show whether sessions die at a middlebox's limit.
 */
export const SESSION_DURATION_BUCKETS: readonly number[] = [
  0.01,
  0.1,
  1,
  10,
  MINUTE,
  4 * MINUTE,
  5 * MINUTE,
  350,
  15 * MINUTE,
  HOUR,
  2 * HOUR,
  6 * HOUR,
  12 * HOUR,
  DAY,
  2 * DAY,
  7 * DAY,
  30 * DAY,
];
