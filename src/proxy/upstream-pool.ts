import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { formatHostPort, type HostPort } from "../util/host-port.js";
import type { ConnectResult } from "./hooks.js";
import { type ConnectOutcome, connectOnce, type PendingConnect } from "./upstream-connector.js";

/** How a listener picks and retries its upstreams. */
export interface UpstreamPolicy {
  readonly targets: readonly HostPort[];
  /** failover: always in the written order; round-robin: rotate the starting point per session. */
  readonly balance: "failover" | "round-robin";
  /** Further attempts after the first failed one, for one session. */
  readonly retries: number;
  /** Wait before the first retry; doubles each retry. */
  readonly retryBackoffMs: number;
  /** Consecutive failed connects after which an address is skipped for the cool-down. */
  readonly failureThreshold: number;
  readonly cooldownMs: number;
  readonly connectTimeoutMs: number;
}

/** Called for every single connect attempt (metrics, logs). */
export type AttemptObserver = (result: ConnectResult, durationMs: number, errno: string | undefined, address: string | undefined) => void;

interface Health {
  failures: number;
  downUntil: number;
}

interface Candidate {
  readonly ip: string;
  readonly port: number;
  readonly key: string;
}

/**
 * The upstream addresses of one listener and what it has learnt about them.
 * Host names are resolved for every session and each resolved address is a
 * candidate, so DNS failover and Kubernetes Services are followed at once.
 */
export class UpstreamPool {
  private readonly health = new Map<string, Health>();
  private cursor = 0;

  constructor(
    readonly policy: UpstreamPolicy,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Connects one session's upstream: candidates in policy order, addresses in
   * cool-down last, up to 1 + retries attempts with doubling backoff. Never
   * rejects; the outcome of the last attempt is returned on failure.
   */
  connect(onAttempt: AttemptObserver): PendingConnect {
    let current: PendingConnect | undefined;
    let cancelled = false;
    let backoffTimer: NodeJS.Timeout | undefined;
    let wake: (() => void) | undefined;
    const run = async (): Promise<ConnectOutcome> => {
      const started = performance.now();
      const { candidates, dnsErrno } = await this.resolve();
      if (candidates.length === 0) {
        const outcome: ConnectOutcome = { ok: false, result: "dns_failure", errno: dnsErrno ?? "ENOTFOUND", address: undefined, durationMs: performance.now() - started };
        onAttempt(outcome.result, outcome.durationMs, outcome.errno, undefined);
        return outcome;
      }
      let last: ConnectOutcome | undefined;
      for (let attempt = 0; attempt <= this.policy.retries && !cancelled; attempt++) {
        if (attempt > 0 && this.policy.retryBackoffMs > 0) {
          await new Promise<void>((resolve) => {
            wake = resolve;
            backoffTimer = setTimeout(resolve, this.policy.retryBackoffMs * 2 ** (attempt - 1));
          });
          if (cancelled) break;
        }
        const candidate = candidates[attempt % candidates.length] as Candidate;
        current = connectOnce(candidate.ip, candidate.port, this.policy.connectTimeoutMs);
        last = await current.done;
        if (last.ok) {
          this.recordSuccess(candidate.key);
          onAttempt("ok", last.durationMs, undefined, last.address);
          return last;
        }
        this.recordFailure(candidate.key);
        onAttempt(last.result, last.durationMs, last.errno, last.address);
      }
      return last ?? { ok: false, result: "error", errno: "ECANCELED", address: undefined, durationMs: performance.now() - started };
    };
    return {
      done: run(),
      cancel: () => {
        cancelled = true;
        if (backoffTimer) clearTimeout(backoffTimer);
        wake?.();
        current?.cancel();
      },
    };
  }

  /** Every resolved address of every target, ordered by policy, those in cool-down last. */
  private async resolve(): Promise<{ candidates: Candidate[]; dnsErrno: string | undefined }> {
    const resolved = await Promise.all(this.policy.targets.map((t) => resolveAll(t)));
    const all = resolved.flatMap((r) => (Array.isArray(r) ? r : []));
    const dnsErrno = resolved.find((r): r is { errno: string } => !Array.isArray(r))?.errno;
    if (this.policy.balance === "round-robin" && all.length > 1) {
      const start = this.cursor++ % all.length;
      all.push(...all.splice(0, start));
    }
    const now = this.now();
    const up = all.filter((c) => (this.health.get(c.key)?.downUntil ?? 0) <= now);
    const down = all.filter((c) => (this.health.get(c.key)?.downUntil ?? 0) > now);
    return { candidates: [...up, ...down], dnsErrno };
  }

  /** Whether an address is being skipped now (for tests and /connections). */
  inCooldown(key: string): boolean {
    return (this.health.get(key)?.downUntil ?? 0) > this.now();
  }

  private recordSuccess(key: string): void {
    this.health.delete(key);
  }

  private recordFailure(key: string): void {
    const health = this.health.get(key) ?? { failures: 0, downUntil: 0 };
    health.failures += 1;
    if (health.failures >= this.policy.failureThreshold) {
      health.downUntil = this.now() + this.policy.cooldownMs;
      health.failures = 0;
    }
    this.health.set(key, health);
  }
}

async function resolveAll(target: HostPort): Promise<Candidate[] | { errno: string }> {
  const make = (ip: string): Candidate => ({ ip, port: target.port, key: formatHostPort({ host: ip, port: target.port }) });
  if (isIP(target.host) !== 0) return [make(target.host)];
  try {
    const addresses = await lookup(target.host, { all: true });
    return addresses.map((a) => make(a.address));
  } catch (error) {
    return { errno: (error as NodeJS.ErrnoException).code ?? "ENOTFOUND" };
  }
}
