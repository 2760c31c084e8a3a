/** What readiness is judged from; KeepaliveProxy fits it as it is. */
export interface ReadinessSource {
  readonly isDraining: boolean;
  readonly currentConfig: { readonly listeners: readonly { readonly name: string }[] };
  readonly listeners: ReadonlyMap<string, { readonly isAccepting: boolean }>;
}

/** The /readyz answer: `ready` decides the status code, the rest says why. */
export interface Readiness {
  readonly ready: boolean;
  readonly draining: boolean;
  /** Every configured listener: `bound` when it accepts now, else `not_bound`. */
  readonly listeners: Readonly<Record<string, "bound" | "not_bound">>;
}

/**
 * Ready means new clients would be served: not draining, and every configured
 * listener bound and accepting. Draining comes first because a load balancer
 * must stop sending clients before the listening sockets close.
 */
export function readiness(source: ReadinessSource): Readiness {
  const listeners: Record<string, "bound" | "not_bound"> = {};
  let allBound = true;
  for (const { name } of source.currentConfig.listeners) {
    const bound = source.listeners.get(name)?.isAccepting === true;
    listeners[name] = bound ? "bound" : "not_bound";
    if (!bound) allBound = false;
  }
  return { ready: !source.isDraining && allBound, draining: source.isDraining, listeners };
}
