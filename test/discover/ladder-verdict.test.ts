// The pure parts of discover: the ladders it builds and the verdict it draws
// from rung outcomes. The sockets are in test/netns/discover.test.ts.

import { describe, expect, it } from "vitest";
import { DEFAULT_MAX_S, defaultLadder, MAX_RUNGS, parseLadder, REFINE_RUNGS, refinementLadder } from "../../src/discover/ladder.js";
import type { RungOutcome, RungResult } from "../../src/discover/rung.js";
import { recommendIdle, verdictOf } from "../../src/discover/verdict.js";
import { parseDuration } from "../../src/util/duration.js";

const rung = (idleS: number, result: RungResult): RungOutcome => ({
  idleS,
  pass: "ladder",
  result,
  errno: undefined,
  decidedAfterMs: idleS * 1000,
  bytesReceived: 0,
});

describe("the discover ladders", () => {
  it("spans 30s to 30m by default, as the issue lists it, each step at most doubling", () => {
    const issue = "30s,1m,2m,3m,4m,5m,6m,8m,10m,15m,20m,30m".split(",").map((d) => (parseDuration(d) ?? 0) / 1000);
    expect(defaultLadder(DEFAULT_MAX_S)).toEqual(issue);
    const ladder = defaultLadder(DEFAULT_MAX_S);
    for (let i = 1; i < ladder.length; i++) expect(ladder[i]).toBeLessThanOrEqual(2 * (ladder[i - 1] ?? 0));
  });

  it("ends at --max even when it is not a round value, and stays within the rung limit at the kernel maximum", () => {
    expect(defaultLadder(100).at(-1)).toBe(100);
    expect(defaultLadder(32_767).length).toBeLessThanOrEqual(MAX_RUNGS);
  });

  it("sorts and deduplicates --ladder, and accepts exactly the rung limit", () => {
    expect(parseLadder("12s,2s,1m,2s")).toEqual([2, 12, 60]);
    expect(parseLadder(Array.from({ length: MAX_RUNGS }, (_, i) => `${i + 1}s`).join(","))).toHaveLength(MAX_RUNGS);
  });

  it("refines strictly between the longest survivor and the shortest casualty, skipping rungs already tried", () => {
    expect(refinementLadder(4, 9, new Set([2, 4, 9, 12]))).toEqual([5, 6, 7, 8]);
    const wide = refinementLadder(240, 300, new Set([240, 300]));
    expect(wide).toHaveLength(REFINE_RUNGS);
    expect(wide.every((s) => s > 240 && s < 300 && Number.isInteger(s))).toBe(true);
    expect(refinementLadder(4, 5, new Set([4, 5]))).toEqual([]);
    expect(refinementLadder(0, 3, new Set([3]))).toEqual([1, 2]);
  });
});

describe("the discover verdict", () => {
  it("brackets the path's timeout by the longest survivor below the shortest casualty and recommends below both", () => {
    const v = verdictOf([rung(2, "survived"), rung(5, "survived"), rung(6, "forgotten"), rung(9, "reset")], true);
    expect(v).toMatchObject({ kind: "forgot", survivedS: 5, forgottenS: 6, recommendedIdleS: recommendIdle(5) });
    expect(v.recommendedIdleS).toBeLessThan(5);
    expect(v.text).toBe(`the path forgot an idle flow after between 5s and 6s; recommended keepalive idle: ${recommendIdle(5)}s`);
  });

  it("never recommends less than one second", () => {
    expect(recommendIdle(1)).toBe(1);
    expect(verdictOf([rung(1, "survived"), rung(2, "forgotten")], true).recommendedIdleS).toBe(1);
  });

  it("says the default 60 s is safe only when an idle of at least 60 s survived", () => {
    expect(verdictOf([rung(30, "survived"), rung(60, "survived")], true).text).toBe("no idle timeout up to 1m; the default 1m is safe");
    expect(verdictOf([rung(12, "survived")], true).text).toMatch(/^no idle timeout up to 12s; .*not measured/);
  });

  it("does not count rungs the upstream closed itself, and says how many", () => {
    const v = verdictOf([rung(2, "survived"), rung(4, "closed"), rung(8, "closed")], true);
    expect(v.kind).toBe("kept");
    expect(v.text).toContain("2 rungs not counted (closed: 2)");
  });

  it("flags a survivor above the shortest casualty as an inconsistent path", () => {
    expect(verdictOf([rung(2, "survived"), rung(4, "forgotten"), rung(8, "survived")], true).text).toContain("but 8s survived");
  });

  it("judges a listener's configured idle against the recommendation", () => {
    const rungs = [rung(60, "survived"), rung(120, "forgotten")];
    expect(verdictOf(rungs, true, { name: "db", idleS: 300 }).text).toContain("listener db's upstream keepalive idle 5m is too long");
    expect(verdictOf(rungs, true, { name: "db", idleS: 30 }).text).toContain("listener db's upstream keepalive idle 30s is safe");
  });
});
