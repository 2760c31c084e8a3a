/**
 * Durations as operators write them: `500ms`, `30s`, `5m`, `2h`, `1d`, or a
 * bare number meaning seconds. Everything inside the proxy is milliseconds.
 */
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

const DURATION = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/;

/**
 * The longest delay a Node timer can hold: setTimeout stores it as a signed
 * 32-bit number of milliseconds and fires a longer one after 1 ms instead
 * (with only a warning on stderr). About 24.8 days.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/** Parses a duration into milliseconds; returns undefined when it is not one. */
export function parseDuration(input: string | number): number | undefined {
  if (typeof input === "number") return Number.isFinite(input) && input >= 0 ? Math.round(input * 1000) : undefined;
  const match = DURATION.exec(input);
  if (!match) return undefined;
  const unit = (match[2] ?? "s") as keyof typeof UNIT_MS;
  return Math.round(Number(match[1]) * UNIT_MS[unit]);
}

/** Formats milliseconds the way parseDuration reads them, in the largest exact unit. */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  for (const unit of ["d", "h", "m", "s"] as const) {
    if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}

/** Milliseconds for a human, e.g. `24.8 days`, for messages that explain a bound. */
export function describeDuration(ms: number): string {
  // Rounded down: "about 24.8 days" must not promise more than the bound.
  const days = Math.floor((ms / UNIT_MS.d) * 10) / 10;
  return days >= 1 ? `${days} days` : formatDuration(ms);
}
