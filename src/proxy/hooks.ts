import type { CloseReason, Side } from "./close-reason.js";

/** Everything the proxy reports about one finished session. */
export interface SessionSummary {
  readonly sessionId: string;
  readonly listener: string;
  readonly client: string;
  readonly upstream: string | undefined;
  readonly reason: CloseReason;
  readonly side: Side;
  /** True when both directions ended with a FIN. */
  readonly clean: boolean;
  readonly errno: string | undefined;
  readonly bytesFromClient: number;
  readonly bytesFromUpstream: number;
  readonly durationMs: number;
}

/** Outcome of one upstream connect attempt, from a closed set (a metrics label). */
export type ConnectResult = "ok" | "refused" | "unreachable" | "dns_failure" | "timeout" | "error";

/** Outcome of a config reload, from a closed set (a metrics label). */
export type ReloadResult = "success" | "failure";

/**
 * The observation points of the proxy: logging, metrics and tests subscribe
 * here instead of reaching into sessions. Every callback is optional and is
 * called synchronously, so it must be cheap and must not throw.
 */
export interface ProxyHooks {
  clientAccepted?(listener: string): void;
  upstreamConnected?(listener: string, result: ConnectResult, durationMs: number, errno: string | undefined): void;
  sessionClosed?(summary: SessionSummary): void;
  /** A reload was applied (`success`) or refused, the running config left in force (`failure`). */
  configReloaded?(result: ReloadResult): void;
}

/** Calls every hook set in order; used to stack logging, metrics and test observers. */
export function combineHooks(...all: ProxyHooks[]): ProxyHooks {
  return {
    clientAccepted: (listener) => {
      for (const h of all) h.clientAccepted?.(listener);
    },
    upstreamConnected: (listener, result, durationMs, errno) => {
      for (const h of all) h.upstreamConnected?.(listener, result, durationMs, errno);
    },
    sessionClosed: (summary) => {
      for (const h of all) h.sessionClosed?.(summary);
    },
    configReloaded: (result) => {
      for (const h of all) h.configReloaded?.(result);
    },
  };
}
