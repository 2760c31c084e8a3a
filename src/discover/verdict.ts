import { DEFAULT_KEEPALIVE } from "../config/schema.js";
import { formatDuration, parseDuration } from "../util/duration.js";
import { type RungOutcome, RungResult } from "./rung.js";

/** What the whole run concluded, over every address of the upstream. */
export interface Verdict {
  readonly kind: VerdictKind;
  /** The longest idle time that survived below the shortest casualty (0 when none did). */
  readonly survivedS: number | undefined;
  /** The shortest idle time the path forgot or reset. */
  readonly forgottenS: number | undefined;
  /** The keepalive idle to configure, whole seconds ≥ 1; undefined when none can be given. */
  readonly recommendedIdleS: number | undefined;
  /** The one line printed as the verdict. */
  readonly text: string;
}

export const VerdictKind = {
  /** Some idle time was forgotten, and a shorter one survived. */
  forgot: "forgot",
  /** Every idle time tried survived. */
  kept: "kept",
  /** Even the shortest idle time tried was forgotten. */
  forgotAll: "forgot_all",
  /** Nothing was decided either way (the upstream closed, or nothing answered). */
  inconclusive: "inconclusive",
  /** No address of the upstream could be connected. */
  unreachable: "unreachable",
} as const;
export type VerdictKind = (typeof VerdictKind)[keyof typeof VerdictKind];

/**
 * The recommendation keeps this fraction of the longest survivor: the path's
 * timer may start a little before ours, and a probe needs time to cross it.
 */
const SAFETY_FRACTION = 0.8;
const DEFAULT_IDLE_S = (parseDuration(DEFAULT_KEEPALIVE.idle) ?? 60_000) / 1000;

const isCasualty = (r: RungOutcome): boolean => r.result === RungResult.forgotten || r.result === RungResult.reset;

/** The keepalive idle recommended when `survivedS` was the longest idle that survived. */
export function recommendIdle(survivedS: number): number {
  return Math.max(1, Math.floor(survivedS * SAFETY_FRACTION));
}

/**
 * Concludes from every rung of every reachable address: the shortest idle
 * time the path forgot anywhere bounds the answer, since a session may take
 * any of the addresses. `configured` is the listener's upstream keepalive idle,
 * when the run was for a listener, so the verdict says whether it is safe.
 */
export function verdictOf(rungs: readonly RungOutcome[], reachable: boolean, configured?: { name: string; idleS: number }): Verdict {
  const none = { survivedS: undefined, forgottenS: undefined, recommendedIdleS: undefined };
  if (!reachable) return { kind: VerdictKind.unreachable, ...none, text: "the upstream is unreachable: nothing was measured" };
  const casualties = rungs.filter(isCasualty).map((r) => r.idleS);
  const survivors = rungs.filter((r) => r.result === RungResult.survived).map((r) => r.idleS);
  const notes = noteUncounted(rungs);
  if (casualties.length === 0) {
    if (survivors.length === 0) return { kind: VerdictKind.inconclusive, ...none, text: `no rung was decided${notes}` };
    const upTo = Math.max(...survivors);
    const recommended = Math.min(upTo, DEFAULT_IDLE_S);
    const safe =
      upTo >= DEFAULT_IDLE_S
        ? `the default ${formatDuration(DEFAULT_IDLE_S * 1000)} is safe`
        : `an idle up to ${formatDuration(upTo * 1000)} is safe; the default ${formatDuration(DEFAULT_IDLE_S * 1000)} was not measured (raise --max)`;
    const text = `no idle timeout up to ${formatDuration(upTo * 1000)}; ${safe}${judge(configured, upTo, "longer than any idle measured")}${notes}`;
    return { kind: VerdictKind.kept, survivedS: upTo, forgottenS: undefined, recommendedIdleS: recommended, text };
  }
  const forgottenS = Math.min(...casualties);
  const below = survivors.filter((s) => s < forgottenS);
  const above = survivors.filter((s) => s > forgottenS);
  const odd =
    above.length > 0 ? `; but ${above.map((s) => formatDuration(s * 1000)).join(", ")} survived: the path is not consistent (several middleboxes?)` : "";
  if (below.length === 0) {
    const text = `the path forgot an idle flow after ${formatDuration(forgottenS * 1000)} or less, the shortest idle tried; try a shorter --ladder${odd}${notes}`;
    return { kind: VerdictKind.forgotAll, survivedS: 0, forgottenS, recommendedIdleS: undefined, text };
  }
  const survivedS = Math.max(...below);
  const recommendedIdleS = recommendIdle(survivedS);
  const text = `the path forgot an idle flow after between ${formatDuration(survivedS * 1000)} and ${formatDuration(forgottenS * 1000)}; recommended keepalive idle: ${formatDuration(recommendedIdleS * 1000)}${judge(configured, recommendedIdleS, "too long")}${odd}${notes}`;
  return { kind: VerdictKind.forgot, survivedS, forgottenS, recommendedIdleS, text };
}

/** `; listener db's upstream keepalive idle 60s is safe` (or too long), when a listener was named. */
function judge(configured: { name: string; idleS: number } | undefined, safeUpToS: number, beyond: string): string {
  if (configured === undefined) return "";
  const idle = formatDuration(configured.idleS * 1000);
  return configured.idleS <= safeUpToS
    ? `; listener ${configured.name}'s upstream keepalive idle ${idle} is safe`
    : `; listener ${configured.name}'s upstream keepalive idle ${idle} is ${beyond}`;
}

/** `; 2 rungs not counted (closed by the upstream: 2)` for rungs that answered neither way. */
function noteUncounted(rungs: readonly RungOutcome[]): string {
  const counts = new Map<string, number>();
  for (const r of rungs) {
    if (r.result === RungResult.survived || isCasualty(r)) continue;
    counts.set(r.result, (counts.get(r.result) ?? 0) + 1);
  }
  if (counts.size === 0) return "";
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  return `; ${total} rung${total === 1 ? "" : "s"} not counted (${[...counts].map(([k, n]) => `${k}: ${n}`).join(", ")})`;
}
