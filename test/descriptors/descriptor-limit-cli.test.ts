import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it, onTestFinished } from "vitest";
import { ChildLog } from "../helpers/child-log.js";
import { writeTempConfig } from "../helpers/local-proxy.js";
import { CLI_PATH, type ProxyLogLine } from "../helpers/proxy-process.js";

/**
 * The built CLI started under `prlimit --nofile=SOFT:HARD`, as a service
 * manager or a shell with `ulimit -n` would start it: what /proc/PID/limits
 * shows and what the startup line says about the descriptor budget.
 */

interface Started {
  readonly pid: number;
  readonly log: ChildLog<ProxyLogLine>;
}

/** Starts the CLI under prlimit (which execs it: same pid) and waits for `listening`. */
async function startUnderPrlimit(soft: number, hard: number, args: readonly string[]): Promise<Started> {
  const child = spawn("prlimit", [`--nofile=${soft}:${hard}`, "--", process.execPath, CLI_PATH, ...args], { stdio: ["pipe", "pipe", "pipe"] });
  const log = new ChildLog<ProxyLogLine>(child, "proxy");
  onTestFinished(() => log.stop(() => child.kill("SIGTERM"), 3_000));
  await log.entries.waitFor((l) => l.msg === "listening", 30_000, "the listening line");
  return { pid: child.pid ?? 0, log };
}

function openFilesLimit(pid: number): { soft: number; hard: number } {
  const row = /^Max open files\s+(\d+)\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, "utf8"));
  if (!row) throw new Error(`no Max open files row in /proc/${pid}/limits`);
  return { soft: Number(row[1]), hard: Number(row[2]) };
}

function configWith(limits: number): string {
  return writeTempConfig(
    `admin: { listen: null }\nlimits: { maxConnections: ${limits} }\nlisteners:\n  - name: a\n    listen: 127.0.0.1:0\n    upstream: { address: 127.0.0.1:1 }\n`,
  );
}

const isBudgetLine = (l: ProxyLogLine): boolean => "descriptorsNeeded" in l || "sessionsSupported" in l;

describe("descriptor limit at startup", () => {
  it("runs with the soft limit raised to the hard one and logs how many sessions it supports", async () => {
    const proxy = await startUnderPrlimit(150, 400, ["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--admin", "off"]);
    // Node's own startup raises the soft limit too (node.cc, PlatformInit), before any of our
    // code runs: this asserts the outcome in force; descriptor-budget.test.ts proves our raise.
    expect(openFilesLimit(proxy.pid)).toEqual({ soft: 400, hard: 400 });
    const line = proxy.log.entries.find(isBudgetLine);
    // Neither limit set: the descriptor limit is the only cap, said at info with (400 - 64) / 2 sessions.
    expect(line).toMatchObject({ level: "info", softLimit: 400, hardLimit: 400, sessionsSupported: 168 });
  });

  it("warns before listening when the hard limit cannot hold limits.maxConnections", async () => {
    const proxy = await startUnderPrlimit(150, 300, ["--config", configWith(1000)]);
    const items = proxy.log.entries.items;
    const warn = items.findIndex((l) => l.level === "warn" && isBudgetLine(l));
    expect(warn, "a warn line about the descriptor budget").toBeGreaterThanOrEqual(0);
    expect(warn).toBeLessThan(items.findIndex((l) => l.msg === "listening"));
    expect(items[warn]).toMatchObject({
      softLimit: 300,
      hardLimit: 300,
      maxConnections: 1000,
      maxConnectionsFrom: "limits.maxConnections",
      descriptorsNeeded: 2064,
      sessionsSupported: 118,
    });
    expect(String(items[warn]?.fix)).toContain("LimitNOFILE=2064");
  });

  it("does not warn when the limit holds 2 × maxConnections + 64", async () => {
    const proxy = await startUnderPrlimit(150, 264, ["--config", configWith(100), "--log-level", "debug"]);
    expect(openFilesLimit(proxy.pid)).toEqual({ soft: 264, hard: 264 });
    expect(proxy.log.entries.find(isBudgetLine)).toMatchObject({ level: "debug", softLimit: 264, maxConnections: 100, descriptorsNeeded: 264 });
    expect(proxy.log.entries.items.filter((l) => l.level === "warn")).toEqual([]);
  });
});
