import type { Logger } from "pino";
import type { Config } from "../config/schema.js";
import type { Libc, ResourceLimit } from "./libc.js";

/**
 * The process's file-descriptor budget: RLIMIT_NOFILE against the sessions
 * the config allows. A session holds two descriptors (client and upstream
 * socket); when they run out, accept and connect fail with EMFILE, so an
 * operator should learn at startup, not in the incident, that the limit is
 * too low. The arithmetic is pure (and unit tested without FFI); only
 * raiseDescriptorLimit touches the kernel.
 */

/** RLIMIT_NOFILE on every Linux architecture Node ships for (x64, arm64, armv7, ppc64le, s390x). */
const RLIMIT_NOFILE = 7;

/** Descriptors one proxied session holds: the client socket and the upstream socket. */
export const DESCRIPTORS_PER_SESSION = 2;

/**
 * Descriptors that are not sessions: Node's own (epoll, eventfds, stdio,
 * about 20-30 at startup), the listening sockets, the admin server and its
 * scrapes, an upstream socket between connect and pairing.
 */
export const DESCRIPTOR_MARGIN = 64;

/** How many sessions the config lets in at most, and which setting says so. */
export type SessionCap =
  | { readonly kind: "limited"; readonly maxConnections: number; readonly from: "limits.maxConnections" | "listeners[].maxConnections" }
  | { readonly kind: "unlimited" };

/**
 * The most sessions the config admits: the process limit, or the sum of the
 * listeners' limits when every listener has one, whichever is lower (a sum is
 * only a bound when no listener is unlimited). 0 means no limit at both levels.
 */
export function sessionCap(config: Pick<Config, "limits" | "listeners">): SessionCap {
  const processMax = config.limits.maxConnections;
  const listenerSum = config.listeners.every((l) => l.maxConnections > 0) ? config.listeners.reduce((sum, l) => sum + l.maxConnections, 0) : 0;
  if (processMax > 0 && (listenerSum === 0 || processMax <= listenerSum)) {
    return { kind: "limited", maxConnections: processMax, from: "limits.maxConnections" };
  }
  if (listenerSum > 0) return { kind: "limited", maxConnections: listenerSum, from: "listeners[].maxConnections" };
  return { kind: "unlimited" };
}

/** RLIMIT_NOFILE needed for `sessions` live sessions: 2 × sessions + 64. */
export function descriptorsNeeded(sessions: number): number {
  return DESCRIPTORS_PER_SESSION * sessions + DESCRIPTOR_MARGIN;
}

/** Live sessions a soft limit supports before accept or connect fail with EMFILE. */
export function sessionsSupported(softLimit: number): number {
  if (!Number.isFinite(softLimit)) return Number.POSITIVE_INFINITY;
  return Math.max(0, Math.floor((softLimit - DESCRIPTOR_MARGIN) / DESCRIPTORS_PER_SESSION));
}

/** The soft RLIMIT_NOFILE in force now; undefined when unlimited or unreadable. */
export function softDescriptorLimit(libc: Libc): number | undefined {
  const limit = libc.getRlimit(RLIMIT_NOFILE);
  return "errno" in limit || !Number.isFinite(limit.soft) ? undefined : limit.soft;
}

/** What raiseDescriptorLimit found and did. */
export interface RaiseOutcome {
  /** The limit as the process found it (Node may already have raised the soft limit: see below). */
  readonly before: ResourceLimit;
  /** The limit in force afterwards. */
  readonly after: ResourceLimit;
  /** The errno of a refused getrlimit or setrlimit; the limit is then left as it was. */
  readonly errno?: number;
}

/**
 * Raises the soft RLIMIT_NOFILE to the hard limit. Node's own startup does the
 * same when it runs as the `node` binary (node.cc, PlatformInit), so this is
 * usually a no-op; it is kept because an embedder or a single-executable build
 * may skip that step, and because the outcome is what the budget check needs.
 * Never lowers a limit.
 */
export function raiseDescriptorLimit(libc: Libc): RaiseOutcome {
  const before = libc.getRlimit(RLIMIT_NOFILE);
  if ("errno" in before) {
    const unknown = { soft: 0, hard: 0 };
    return { before: unknown, after: unknown, errno: before.errno };
  }
  if (before.soft >= before.hard) return { before, after: before };
  const errno = libc.setRlimit(RLIMIT_NOFILE, { soft: before.hard, hard: before.hard });
  if (errno !== 0) return { before, after: before, errno };
  const after = libc.getRlimit(RLIMIT_NOFILE);
  return { before, after: "errno" in after ? before : after };
}

/** One log line's worth: level, message and fields. */
export interface DescriptorVerdict {
  readonly level: "warn" | "info" | "debug";
  readonly msg: string;
  readonly fields: Readonly<Record<string, unknown>>;
}

/**
 * Judges a limit against the config's session cap. Below `2 × maxConnections
 * + 64` it is a warn naming the limit, the budget and the fix; with no
 * connection limit at all it is an info line saying how many sessions the
 * limit supports, since that is then the real cap; otherwise debug.
 */
export function assessDescriptorBudget(raise: RaiseOutcome, cap: SessionCap): DescriptorVerdict {
  const { soft, hard } = raise.after;
  const base = {
    softLimit: finiteOr(soft),
    hardLimit: finiteOr(hard),
    raisedFrom: raise.after.soft !== raise.before.soft ? finiteOr(raise.before.soft) : undefined,
    errno: raise.errno,
    sessionsSupported: finiteOr(sessionsSupported(soft)),
  };
  if (cap.kind === "unlimited") {
    return { level: "info", msg: "no connection limit set; the descriptor limit caps sessions", fields: base };
  }
  const needed = descriptorsNeeded(cap.maxConnections);
  const fields = { ...base, maxConnections: cap.maxConnections, maxConnectionsFrom: cap.from, descriptorsNeeded: needed };
  if (soft >= needed) return { level: "debug", msg: "descriptor limit covers the connection limit", fields };
  return {
    level: "warn",
    msg: "descriptor limit below the connection limit; clients past it will be refused with EMFILE",
    fields: {
      ...fields,
      fix: `raise RLIMIT_NOFILE to at least ${needed}: LimitNOFILE=${needed} in the systemd unit, ulimit -n ${needed} before starting, prlimit --pid PID --nofile=${needed}:${needed}, or the container runtime's nofile ulimit (docker run --ulimit nofile=${needed}:${needed})`,
    },
  };
}

/**
 * At startup: raises the soft descriptor limit to the hard one, then logs one
 * line judging it against the config's connection limits. Process-wide, like
 * the malloc tuning, but it needs the config, so the composition root calls it.
 */
export function checkDescriptorBudget(libc: Libc, config: Pick<Config, "limits" | "listeners">, logger: Logger): DescriptorVerdict {
  const verdict = assessDescriptorBudget(raiseDescriptorLimit(libc), sessionCap(config));
  logger[verdict.level](verdict.fields, verdict.msg);
  return verdict;
}

/** JSON has no Infinity: an unlimited value is logged as the string "unlimited", as /proc/PID/limits shows it. */
function finiteOr(n: number): number | "unlimited" {
  return Number.isFinite(n) ? n : "unlimited";
}
