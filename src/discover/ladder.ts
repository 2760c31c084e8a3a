import { formatDuration, parseDuration } from "../util/duration.js";

/**
 * The candidate idle times ("rungs") a discovery run tries. Every rung is a
 * whole number of seconds because TCP_KEEPIDLE is set in seconds.
 */

/** More rungs than this are refused: each rung is one open connection per upstream address. */
export const MAX_RUNGS = 64;
/** The kernel's upper bound for TCP_KEEPIDLE (MAX_TCP_KEEPIDLE in include/net/tcp.h), in seconds. */
export const MAX_IDLE_S = 32_767;
/** Default --max: longer than the idle timeout of every common NAT gateway (AWS 350 s, GCP 1200 s). */
export const DEFAULT_MAX_S = 30 * 60;
/** The default ladder starts at --max divided by this, so a run spans the same ratio at any scale. */
const LADDER_SPAN = 60;
/** Refinement rungs between the longest survivor and the shortest casualty. */
export const REFINE_RUNGS = 8;

/**
 * Round idle times an operator would write, ascending. The default ladder is
 * the ones between max/60 and max: for 30m it is 30s, 1m, 2m, 3m, 4m, 5m, 6m,
 * 8m, 10m, 15m, 20m, 30m, each step at most doubling.
 */
const ROUND_IDLES_S = [
  ...[1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30],
  ...[1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45].map((m) => m * 60),
  ...[1, 1.5, 2, 3, 4, 6, 8].map((h) => h * 3600),
];

/** A flag value that cannot be used, with the message that names the flag and the fix. */
export class DiscoverFlagError extends Error {
  readonly code = "KP_DISCOVER_BAD_FLAG";
  constructor(message: string) {
    super(message);
    this.name = "DiscoverFlagError";
  }
}

/** Parses --max: a duration of whole seconds from 1s to the kernel's TCP_KEEPIDLE maximum. */
export function parseMax(text: string): number {
  return parseIdle(text, "--max");
}

/**
 * Parses --ladder (`D,D,…`): whole-second durations, sorted and deduplicated.
 * Refuses more than MAX_RUNGS rungs, naming the flag.
 */
export function parseLadder(text: string): number[] {
  const items = text.split(",").map((s) => s.trim());
  if (items.length > MAX_RUNGS) {
    throw new DiscoverFlagError(`--ladder has ${items.length} rungs; at most ${MAX_RUNGS} are allowed (each rung is one open connection per upstream address)`);
  }
  if (items.some((s) => s === "")) throw new DiscoverFlagError(`--ladder "${text}" has an empty entry; write durations separated by commas, e.g. 30s,1m,5m`);
  return [...new Set(items.map((s) => parseIdle(s, "--ladder")))].sort((a, b) => a - b);
}

function parseIdle(text: string, flag: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new DiscoverFlagError(`${flag}: "${text}" is not a duration; write e.g. 30s, 5m or 1h`);
  if (ms % 1000 !== 0) throw new DiscoverFlagError(`${flag}: ${text} is not whole seconds; TCP_KEEPIDLE is set in seconds`);
  const s = ms / 1000;
  if (s < 1 || s > MAX_IDLE_S) {
    throw new DiscoverFlagError(`${flag}: ${text} is out of range; the kernel takes a keepalive idle from 1s to ${formatDuration(MAX_IDLE_S * 1000)}`);
  }
  return s;
}

/** The default ladder up to `maxS` seconds: the round idle times from maxS/60 to maxS, and maxS itself. */
export function defaultLadder(maxS: number): number[] {
  const rungs = ROUND_IDLES_S.filter((s) => s >= maxS / LADDER_SPAN && s < maxS);
  return [...rungs, maxS];
}

/**
 * The refinement rungs strictly between `survivedS` (0 when nothing survived)
 * and `forgottenS`: up to `count` whole seconds spread evenly, none already
 * tried. Empty when the gap holds no whole second.
 */
export function refinementLadder(survivedS: number, forgottenS: number, tried: ReadonlySet<number>, count = REFINE_RUNGS): number[] {
  const rungs = new Set<number>();
  for (let i = 1; i <= count; i++) {
    const s = Math.round(survivedS + ((forgottenS - survivedS) * i) / (count + 1));
    if (s > survivedS && s < forgottenS && s >= 1 && !tried.has(s)) rungs.add(s);
  }
  return [...rungs].sort((a, b) => a - b);
}
