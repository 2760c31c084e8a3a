import { formatDuration } from "../util/duration.js";
import type { ProbeTiming, RungOutcome } from "./rung.js";
import { RungResult } from "./rung.js";
import type { DiscoverReport, PendingRung } from "./run.js";
import type { Verdict } from "./verdict.js";

/** What the run was asked to do, for the header of the report. */
export interface ReportHeader {
  /** The upstream as the operator named it (`--upstream`, or `listener NAME`). */
  readonly target: string;
  readonly ladderS: readonly number[];
  readonly refine: boolean;
  readonly probe: ProbeTiming;
}

const RESULT_TEXT: Record<RungResult, string> = {
  [RungResult.survived]: "survived",
  [RungResult.forgotten]: "forgotten (timeout)",
  [RungResult.reset]: "reset",
  [RungResult.closed]: "closed by the upstream",
  [RungResult.undecided]: "undecided",
  [RungResult.error]: "error",
  [RungResult.notConnected]: "not connected",
};

const idle = (s: number): string => formatDuration(s * 1000);
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;

/** The report as lines for a terminal: a header, a table per address, and the verdict line last. */
export function formatReport(header: ReportHeader, report: DiscoverReport, verdict: Verdict): string[] {
  const lines = [
    `discover ${header.target}: ladder ${header.ladderS.map(idle).join(",")}${header.refine ? " then a refinement pass" : ""}; ` +
      `a probe every ${header.probe.intervalS}s, forgotten after ${header.probe.count} unanswered; no payload byte sent`,
  ];
  for (const u of report.unresolved) lines.push("", `${u.upstream}: does not resolve (${u.code})`);
  for (const a of report.addresses) {
    lines.push("");
    if (!a.reachable) {
      lines.push(`${a.address}${a.address === a.upstream ? "" : ` (${a.upstream})`}: unreachable (${a.errno ?? "error"})`);
      continue;
    }
    lines.push(`${a.address}${a.address === a.upstream ? "" : ` (${a.upstream})`}`);
    lines.push(...table(a.rungs));
  }
  lines.push("", `verdict: ${verdict.text}`);
  return lines;
}

function table(rungs: readonly RungOutcome[]): string[] {
  const rows = [["idle", "pass", "result", "decided after"], ...rungs.map(row)];
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => `  ${r.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ")}`.trimEnd());
}

function row(r: RungOutcome): string[] {
  const errno = r.errno !== undefined && r.result !== RungResult.reset && r.errno !== "ETIMEDOUT" ? ` ${r.errno}` : "";
  const banner = r.bytesReceived > 0 ? ` (upstream sent ${r.bytesReceived} bytes)` : "";
  return [idle(r.idleS), r.pass, `${RESULT_TEXT[r.result]}${errno}${banner}`, seconds(r.decidedAfterMs)];
}

/** The same report as one JSON document; durations in whole seconds or milliseconds, named so. */
export function reportJson(header: ReportHeader, report: DiscoverReport, verdict: Verdict): unknown {
  return {
    target: header.target,
    ladderS: header.ladderS,
    refine: header.refine,
    probe: header.probe,
    unresolved: report.unresolved,
    addresses: report.addresses.map((a) => ({
      upstream: a.upstream,
      address: a.address,
      reachable: a.reachable,
      errno: a.errno ?? null,
      rungs: a.rungs.map((r) => ({
        idleS: r.idleS,
        pass: r.pass,
        result: r.result,
        errno: r.errno ?? null,
        decidedAfterMs: Math.round(r.decidedAfterMs),
        bytesReceived: r.bytesReceived,
      })),
    })),
    verdict: {
      kind: verdict.kind,
      survivedS: verdict.survivedS ?? null,
      forgottenS: verdict.forgottenS ?? null,
      recommendedIdleS: verdict.recommendedIdleS ?? null,
      text: verdict.text,
    },
  };
}

/** `waiting for 3 rungs: 8m, 10m, 15m; 4m12s of about 15m3s` for a progress line; times on the performance.now() clock. */
export function progressLine(pending: readonly PendingRung[], runStartedAt: number, now: number, probe: ProbeTiming): string {
  const elapsed = clock(now - runStartedAt);
  if (pending.length === 0) return `finishing; ${elapsed}`;
  const idles = [...new Set(pending.map((p) => p.idleS))].sort((a, b) => a - b);
  const shown = idles.length > 6 ? [...idles.slice(0, 6).map(idle), "…"] : idles.map(idle);
  const endsAt = Math.max(...pending.map((p) => p.startedAt + (p.idleS + probe.intervalS * probe.count) * 1000));
  return `waiting for ${pending.length} rung${pending.length === 1 ? "" : "s"}: ${shown.join(", ")}; ${elapsed} of about ${clock(endsAt - runStartedAt)}`;
}

/** Whole seconds as `4m12s`. */
function clock(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}
