import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { type Config, configSchema } from "../../src/config/schema.js";
import {
  assessDescriptorBudget,
  descriptorsNeeded,
  type RaiseOutcome,
  raiseDescriptorLimit,
  sessionCap,
  sessionsSupported,
} from "../../src/net/descriptor-limit.js";
import { loadLibc } from "../../src/net/libc.js";

/**
 * The descriptor budget: the pure arithmetic on real parsed configs, and the
 * getrlimit/setrlimit binding against what the kernel shows in /proc/self/limits.
 */

const RLIMIT_NOFILE = 7;

function config(limits: number, listeners: readonly number[]): Config {
  return configSchema.parse({
    limits: { maxConnections: limits },
    listeners: listeners.map((max, i) => ({ name: `l${i}`, listen: `127.0.0.1:${7000 + i}`, upstream: { address: "127.0.0.1:1" }, maxConnections: max })),
  });
}

/** The rows of /proc/self/limits by name, "unlimited" as Infinity. */
function procLimits(): Map<string, { soft: number; hard: number }> {
  const rows = new Map<string, { soft: number; hard: number }>();
  for (const line of readFileSync("/proc/self/limits", "utf8").split("\n").slice(1)) {
    const m = /^(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)/.exec(line);
    if (!m) continue;
    const value = (s: string | undefined): number => (s === "unlimited" ? Number.POSITIVE_INFINITY : Number(s));
    rows.set(m[1] as string, { soft: value(m[2]), hard: value(m[3]) });
  }
  return rows;
}

const unchanged = (soft: number, hard = soft): RaiseOutcome => ({ before: { soft, hard }, after: { soft, hard } });

describe("session cap", () => {
  it("takes limits.maxConnections when the listeners have no limit", () => {
    expect(sessionCap(config(1000, [0, 0]))).toEqual({ kind: "limited", maxConnections: 1000, from: "limits.maxConnections" });
  });

  it("takes the sum of the listeners' limits when the process has none", () => {
    expect(sessionCap(config(0, [300, 200]))).toEqual({ kind: "limited", maxConnections: 500, from: "listeners[].maxConnections" });
  });

  it("takes the lower of the two when both are set", () => {
    expect(sessionCap(config(10_000, [500, 500]))).toEqual({ kind: "limited", maxConnections: 1000, from: "listeners[].maxConnections" });
    expect(sessionCap(config(800, [500, 500]))).toEqual({ kind: "limited", maxConnections: 800, from: "limits.maxConnections" });
  });

  it("is unlimited when the process has no limit and one listener has none", () => {
    expect(sessionCap(config(0, [500, 0]))).toEqual({ kind: "unlimited" });
    expect(sessionCap(config(0, [0]))).toEqual({ kind: "unlimited" });
  });
});

describe("descriptor budget", () => {
  it("needs two descriptors per session plus 64", () => {
    expect(descriptorsNeeded(1000)).toBe(2064);
    expect(sessionsSupported(2064)).toBe(1000);
    expect(sessionsSupported(2063)).toBe(999);
    expect(sessionsSupported(50)).toBe(0);
  });

  it("warns one descriptor below 2 × maxConnections + 64, naming the limit, the budget and the fix", () => {
    const cap = sessionCap(config(1000, [0]));
    const verdict = assessDescriptorBudget(unchanged(2063), cap);
    expect(verdict.level).toBe("warn");
    expect(verdict.fields).toMatchObject({
      softLimit: 2063,
      hardLimit: 2063,
      maxConnections: 1000,
      maxConnectionsFrom: "limits.maxConnections",
      descriptorsNeeded: 2064,
      sessionsSupported: 999,
    });
    for (const fix of ["LimitNOFILE=2064", "ulimit -n 2064", "prlimit", "--ulimit nofile=2064:2064"]) expect(String(verdict.fields.fix)).toContain(fix);
    expect(verdict.msg).not.toMatch(/\d/);
    expect(assessDescriptorBudget(unchanged(2064), cap).level).toBe("debug");
  });

  it("says at info how many sessions the limit supports when nothing else limits them", () => {
    const verdict = assessDescriptorBudget(unchanged(1024, 4096), sessionCap(config(0, [0])));
    expect(verdict.level).toBe("info");
    expect(verdict.fields).toMatchObject({ softLimit: 1024, hardLimit: 4096, sessionsSupported: 480 });
    expect(verdict.fields.maxConnections).toBeUndefined();
  });

  it("reports the soft limit it raised from, and unlimited as a string", () => {
    const raised: RaiseOutcome = {
      before: { soft: 1024, hard: Number.POSITIVE_INFINITY },
      after: { soft: Number.POSITIVE_INFINITY, hard: Number.POSITIVE_INFINITY },
    };
    const verdict = assessDescriptorBudget(raised, sessionCap(config(0, [0])));
    expect(verdict.fields).toMatchObject({ raisedFrom: 1024, softLimit: "unlimited", hardLimit: "unlimited", sessionsSupported: "unlimited" });
    expect(JSON.parse(JSON.stringify(verdict.fields))).toEqual(verdict.fields);
  });
});

describe("getrlimit and setrlimit through koffi", () => {
  it("reads every limit as /proc/self/limits shows it, RLIM_INFINITY as Infinity", () => {
    const libc = loadLibc();
    const proc = procLimits();
    // Resource numbers from <sys/resource.h> on Linux, in /proc's naming.
    const names = [
      "Max cpu time",
      "Max file size",
      "Max data size",
      "Max stack size",
      "Max core file size",
      "Max resident set",
      "Max processes",
      "Max open files",
    ];
    for (const [resource, name] of names.entries()) expect(libc.getRlimit(resource), name).toEqual(proc.get(name));
    expect(
      [...proc.values()].some((l) => l.hard === Number.POSITIVE_INFINITY),
      "at least one unlimited row to decode",
    ).toBe(true);
  });

  it("answers setrlimit's errno instead of throwing", () => {
    const libc = loadLibc();
    expect(libc.setRlimit(RLIMIT_NOFILE, { soft: 100, hard: 50 })).toBe(22); // EINVAL: soft above hard
  });

  it("raises a lowered soft RLIMIT_NOFILE to the hard limit", () => {
    const libc = loadLibc();
    const original = libc.getRlimit(RLIMIT_NOFILE);
    if ("errno" in original) throw new Error(`getrlimit failed: errno ${original.errno}`);
    expect(original.hard).toBeGreaterThan(256);
    // This worker process is the test's own: lower its soft limit, and put it back whatever happens.
    expect(libc.setRlimit(RLIMIT_NOFILE, { soft: 256, hard: original.hard })).toBe(0);
    try {
      expect(procLimits().get("Max open files")).toEqual({ soft: 256, hard: original.hard });
      const outcome = raiseDescriptorLimit(libc);
      expect(outcome).toEqual({ before: { soft: 256, hard: original.hard }, after: { soft: original.hard, hard: original.hard } });
      expect(procLimits().get("Max open files")).toEqual({ soft: original.hard, hard: original.hard });
      expect(assessDescriptorBudget(outcome, { kind: "unlimited" }).fields.raisedFrom).toBe(256);
    } finally {
      libc.setRlimit(RLIMIT_NOFILE, original);
    }
  });
});
