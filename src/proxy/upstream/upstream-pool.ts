import { lookup } from "node:dns/promises";
import { isIP, type Socket } from "node:net";
import type { CancelSignal } from "../../util/cancel-signal.js";
import { formatHostPort, type HostPort } from "../../util/host-port.js";
import { settleOnce } from "../../util/settle-once.js";
import type { ConnectResult } from "../hooks.js";
import { type ConnectDone, type ConnectOutcome, type SocketPreparer, startConnect } from "./upstream-connector.js";

/** How a listener picks and retries its upstreams. */
export interface UpstreamPolicy {
  readonly targets: readonly HostPort[];
  /** failover: always in the written order; round-robin: rotate the starting point per session. */
  readonly balance: "failover" | "round-robin";
  /**
   * Further attempts after the first failed one, for one session. Undefined
   * (the default): each resolved address once, so one name with several
   * addresses fails over like several names do, up to MAX_DEFAULT_ATTEMPTS.
   */
  readonly retries: number | undefined;
  /** Wait before the first retry; doubles each retry. */
  readonly retryBackoffMs: number;
  /** Consecutive failed connects after which an address is skipped for the cool-down. */
  readonly failureThreshold: number;
  readonly cooldownMs: number;
  readonly connectTimeoutMs: number;
}

/**
 * Attempts per session when `retries` is not set: every resolved address once,
 * but no more than this, so a name that resolves to fifty addresses cannot
 * hold a client for fifty connect timeouts.
 */
export const MAX_DEFAULT_ATTEMPTS = 8;

/** Called for every single connect attempt that reached the network (metrics, logs). */
export type AttemptObserver = (result: ConnectResult, durationMs: number, errno: string | undefined, address: string | undefined) => void;

interface Health {
  failures: number;
  downUntil: number;
}

interface Candidate {
  /** The configured host name (or IP) it was resolved from: TLS's default SNI. */
  readonly host: string;
  readonly ip: string;
  readonly port: number;
  readonly key: string;
}

/** What one session asks of the pool. */
export interface ConnectRequest {
  /** Aborted when the session no longer wants an upstream: the wait ends as `cancelled`. */
  readonly signal: CancelSignal;
  readonly onAttempt: AttemptObserver;
  /** Applied to the socket the moment it connects. */
  readonly prepare?: SocketPreparer;
  /**
   * A step each connected socket must pass before the attempt counts as made
   * (TLS origination). A socket that fails it is a failed attempt like a
   * refused connect: the address counts a failure (so one whose handshakes
   * keep failing reaches its cool-down) and the next attempt runs.
   */
  readonly secure?: SecureStep | undefined;
}

/** A connected upstream socket, as the pool hands it on. */
export type ConnectedUpstream = Extract<ConnectOutcome, { ok: true }>;

/**
 * Secures a connected socket: `done` with the socket to use instead (a
 * TLSSocket over it), or with undefined and the error code when it failed or
 * the request's signal ended it (the step destroys the socket either way).
 */
export type SecureStep = (connected: ConnectedUpstream, done: (secured: Socket | undefined, code?: string) => void) => void;

/**
 * The upstream addresses of one listener and what it has learnt about them.
 * Host names are resolved for every session and each resolved address is a
 * candidate, so DNS failover and Kubernetes Services are followed at once.
 */
export class UpstreamPool {
  private readonly health = new Map<string, Health>();
  private cursor = 0;
  /**
   * The candidates when every target is an IP address: they never change, so
   * a session's connect needs no lookup, no promise for it and no new list.
   */
  private readonly literal: readonly Candidate[] | undefined;

  constructor(
    readonly policy: UpstreamPolicy,
    private readonly now: () => number = Date.now,
  ) {
    this.literal = policy.targets.every((t) => isIP(t.host) !== 0) ? policy.targets.map((t) => candidateOf(t.host, t.host, t.port)) : undefined;
  }

  /**
   * Connects one session's upstream: candidates in policy order, addresses in
   * cool-down last, with doubling backoff between attempts, and tells `done`
   * once. Never throws; the outcome of the last attempt is given on failure.
   * An aborted signal ends the wait at once as `cancelled`, which does not
   * touch any address's health. An attempt that failed for the proxy's own
   * lack of descriptors (`local`) ends the connect without blaming the
   * address. Callbacks, not promises, on this path run for every session;
   * only a host name's lookup is a promise.
   */
  start(request: ConnectRequest, done: ConnectDone): void {
    const started = performance.now();
    if (this.literal !== undefined) {
      this.tryCandidates(this.ordered(this.literal), undefined, request, started, done);
      return;
    }
    void this.resolve().then(({ candidates, dnsErrno }) => this.tryCandidates(candidates, dnsErrno, request, started, done));
  }

  /** start() as a promise, for one-off callers (check --connect). Never rejects. */
  connect(request: ConnectRequest): Promise<ConnectOutcome> {
    return new Promise((resolve) => this.start(request, resolve));
  }

  /** Tries `candidates` (resolved and ordered) as the policy says; see start. */
  private tryCandidates(
    candidates: readonly Candidate[],
    dnsErrno: string | undefined,
    { signal, onAttempt, prepare, secure }: ConnectRequest,
    started: number,
    done: ConnectDone,
  ): void {
    const cancelled = (): ConnectOutcome => ({ ok: false, result: "cancelled", errno: undefined, address: undefined, durationMs: performance.now() - started });
    if (signal.aborted) {
      done(cancelled());
      return;
    }
    if (candidates.length === 0) {
      const outcome: ConnectOutcome = { ok: false, result: "dns_failure", errno: dnsErrno ?? "ENOTFOUND", address: undefined, durationMs: performance.now() - started };
      onAttempt(outcome.result as ConnectResult, outcome.durationMs, outcome.errno, undefined);
      done(outcome);
      return;
    }
    const attempts = this.policy.retries === undefined ? Math.min(candidates.length, MAX_DEFAULT_ATTEMPTS) : 1 + this.policy.retries;
    const attempt = (n: number): void => {
      const candidate = candidates[n % candidates.length] as Candidate;
      startConnect(candidate.ip, candidate.port, this.policy.connectTimeoutMs, signal, prepare, candidate.key, (last) => {
        if (last.ok) {
          onAttempt("ok", last.durationMs, undefined, last.address);
          const connected: ConnectedUpstream = { ...last, host: candidate.host };
          if (secure === undefined) {
            this.recordSuccess(candidate.key);
            done(connected);
            return;
          }
          secure(connected, (secured, code) => {
            if (secured !== undefined) {
              this.recordSuccess(candidate.key);
              done({ ...connected, socket: secured });
              return;
            }
            if (signal.aborted) return done(cancelled());
            this.recordFailure(candidate.key);
            retryOrEnd(n, { ok: false, result: "handshake", errno: code, address: last.address, durationMs: performance.now() - started });
          });
          return;
        }
        // (`handshake` is the pool's own verdict, never a connect's.)
        if (last.result === "local" || last.result === "handshake") return done(last);
        onAttempt(last.result, last.durationMs, last.errno, last.address);
        if (last.result === "cancelled") return done(last);
        this.recordFailure(candidate.key);
        retryOrEnd(n, last);
      });
    };
    /** After failed attempt n: the next one after its backoff, or `failed` when none is left. */
    const retryOrEnd = (n: number, failed: ConnectOutcome): void => {
      if (n + 1 >= attempts) {
        done(failed);
        return;
      }
      const backoffMs = this.policy.retryBackoffMs * 2 ** n;
      if (backoffMs <= 0) {
        attempt(n + 1);
        return;
      }
      // A wait with nothing of its own to end it: only its timeout (retry) or the signal (cancelled).
      if (signal.aborted) {
        done(cancelled());
        return;
      }
      settleOnce({ timeoutMs: backoffMs, signal, onTimeout: () => true, onAbort: () => false }, (waited) => (waited ? attempt(n + 1) : done(cancelled())));
    };
    attempt(0);
  }

  /**
   * What the pool knows of each address it has seen fail: consecutive
   * failures and the end of its cool-down. Addresses that no longer resolve
   * are dropped at the next resolution.
   */
  healthOf(key: string): { readonly failures: number; readonly downUntil: number } | undefined {
    return this.health.get(key);
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
    this.forgetUnresolved(all, resolved.every((r) => Array.isArray(r)));
    return { candidates: this.inCooldownLast(all), dnsErrno };
  }

  /** The fixed IP candidates in policy order: rotated for round-robin, those in cool-down last. */
  private ordered(literal: readonly Candidate[]): readonly Candidate[] {
    if (literal.length === 1) return literal;
    if (this.policy.balance === "round-robin") {
      const start = this.cursor++ % literal.length;
      return this.inCooldownLast([...literal.slice(start), ...literal.slice(0, start)]);
    }
    return this.health.size === 0 ? literal : this.inCooldownLast(literal);
  }

  /** `all` with the addresses in cool-down moved to the end, otherwise in order. */
  private inCooldownLast(all: readonly Candidate[]): Candidate[] {
    const now = this.now();
    const up = all.filter((c) => (this.health.get(c.key)?.downUntil ?? 0) <= now);
    const down = all.filter((c) => (this.health.get(c.key)?.downUntil ?? 0) > now);
    return [...up, ...down];
  }

  /** Every address with a health record (a recent failure or a cool-down), for the status page. */
  healthRecords(): Iterable<readonly [string, { readonly failures: number; readonly downUntil: number }]> {
    return this.health.entries();
  }

  /** Whether an address is being skipped now (for tests and /connections). */
  inCooldown(key: string): boolean {
    return (this.health.get(key)?.downUntil ?? 0) > this.now();
  }

  /**
   * Drops health entries of addresses no target resolves to any more, so the
   * map stays as small as the set of addresses in use. Only after a complete
   * resolution: a failed lookup says nothing about which addresses are gone.
   */
  private forgetUnresolved(all: readonly Candidate[], complete: boolean): void {
    if (!complete || this.health.size === 0) return;
    const current = new Set(all.map((c) => c.key));
    for (const key of this.health.keys()) if (!current.has(key)) this.health.delete(key);
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

/** One address of a target: `host` is the name it was resolved from (TLS's default SNI). */
function candidateOf(host: string, ip: string, port: number): Candidate {
  return { host, ip, port, key: formatHostPort({ host: ip, port }) };
}

async function resolveAll(target: HostPort): Promise<Candidate[] | { errno: string }> {
  if (isIP(target.host) !== 0) return [candidateOf(target.host, target.host, target.port)];
  try {
    const addresses = await lookup(target.host, { all: true });
    return addresses.map((a) => candidateOf(target.host, a.address, target.port));
  } catch (error) {
    return { errno: (error as NodeJS.ErrnoException).code ?? "ENOTFOUND" };
  }
}
