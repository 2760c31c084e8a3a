import type { Socket } from "node:net";

/**
 * Descriptors kept free for what a session needs beyond its client socket:
 * its upstream socket, plus the admin server, DNS lookups and log files.
 */
export const DESCRIPTOR_RESERVE = 16;

/**
 * Whether an accepted socket leaves the process too few descriptors to serve
 * it. Linux hands out the lowest free descriptor, so a socket numbered N means
 * every descriptor below N is in use: when N is within DESCRIPTOR_RESERVE of
 * the limit, at most that many are left. The answer errs only towards
 * serving: a low free hole hides a full top, and then the upstream connect's
 * EMFILE is handled instead.
 */
export function nearDescriptorLimit(socket: Socket, limit: number | undefined): boolean {
  if (limit === undefined) return false;
  const fd = (socket as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
  return typeof fd === "number" && fd >= limit - DESCRIPTOR_RESERVE;
}
