// deploy/systemd/keepalive-proxy.service: accepted by `systemd-analyze verify`
// without a word, consistent with the config it ships beside, and started the
// way its ExecStart says, the proxy asks for exactly the LimitNOFILE it grants.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it, onTestFinished } from "vitest";
import { parse as parseYaml } from "yaml";
import { configSchema } from "../../src/config/schema.js";
import { ChildLog } from "../helpers/child-log.js";
import type { ProxyLogLine } from "../helpers/proxy-process.js";
import { runTool, toolSupport } from "../helpers/tools.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const UNIT = join(ROOT, "deploy/systemd/keepalive-proxy.service");
const CONFIG = join(ROOT, "deploy/systemd/keepalive-proxy.yaml");

/**
 * The installed locations the unit names, and where each one is in this
 * checkout. verify checks that every Exec*= binary exists and is executable:
 * pointing the unit at this checkout's node keeps that check real on a
 * machine without /usr/bin/node, instead of silencing it.
 */
const INSTALLED_TO_CHECKOUT: readonly (readonly [string, string])[] = [
  ["/usr/bin/node", process.execPath],
  ["/etc/keepalive-proxy/keepalive-proxy.yaml", CONFIG],
  ["/opt/keepalive-proxy/", ROOT],
];

function toCheckout(text: string): string {
  return INSTALLED_TO_CHECKOUT.reduce((t, [installed, here]) => t.replaceAll(installed, here), text);
}

/** Key=value settings of the unit by key (every occurrence, in order); comments and sections dropped. */
function unitSettings(text: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) settings.set(m[1] as string, [...(settings.get(m[1] as string) ?? []), m[2] as string]);
  }
  return settings;
}

function setting(settings: Map<string, string[]>, key: string): string | undefined {
  return settings.get(key)?.at(-1);
}

/** A temporary directory holding `text` as keepalive-proxy.service; removed when the test ends. */
function writeUnit(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), "kp-unit-"));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "keepalive-proxy.service");
  writeFileSync(file, text);
  return file;
}

const systemdAnalyze = toolSupport("systemd-analyze");

describe.skipIf(!systemdAnalyze.ok)("systemd unit", () => {
  it("passes systemd-analyze verify with no output, its ExecStart pointing at this checkout", async () => {
    const unit = toCheckout(readFileSync(UNIT, "utf8"));
    const argv = setting(unitSettings(unit), "ExecStart")?.split(/\s+/) ?? [];
    // verify checks the binary, not its arguments: the script and the config must exist too.
    for (const path of argv.filter((a) => a.startsWith("/"))) expect(existsSync(path), path).toBe(true);
    const result = await runTool(["systemd-analyze", "verify", writeUnit(unit)]);
    expect(`${result.stdout}${result.stderr}`).toBe("");
    expect(result.code).toBe(0);
  });

  it("is checked for real: verify complains about a missing ExecStart binary and an unknown key", async () => {
    const broken = toCheckout(readFileSync(UNIT, "utf8"))
      .replace(`ExecStart=${process.execPath}`, "ExecStart=/nonexistent/node")
      .replace("LimitNOFILE=", "LimitNOFILES=");
    const result = await runTool(["systemd-analyze", "verify", writeUnit(broken)]);
    expect(result.stderr).toContain("/nonexistent/node");
    expect(result.stderr).toContain("LimitNOFILES");
    expect(result.code).not.toBe(0);
  });
});

describe("systemd unit and its config", () => {
  const settings = unitSettings(readFileSync(UNIT, "utf8"));
  const config = configSchema.parse(parseYaml(readFileSync(CONFIG, "utf8")));

  it("reloads with SIGHUP, restarts on failure, and stops with SIGTERM after the drain timeout and the 2 s reset wait", () => {
    expect(setting(settings, "ExecReload")).toBe("/bin/kill -HUP $MAINPID");
    expect(setting(settings, "Restart")).toBe("on-failure");
    expect(setting(settings, "KillSignal")).toBe("SIGTERM");
    const stopSeconds = Number(/^(\d+)s$/.exec(setting(settings, "TimeoutStopSec") ?? "")?.[1]);
    expect(stopSeconds * 1000).toBeGreaterThan(config.shutdown.drainTimeout + 2000);
  });

  it("runs unprivileged and sandboxed, with W+X memory left to V8's JIT", () => {
    expect(setting(settings, "DynamicUser")).toBe("yes");
    expect(setting(settings, "CapabilityBoundingSet")).toBe("");
    expect(setting(settings, "NoNewPrivileges")).toBe("yes");
    expect(setting(settings, "ProtectSystem")).toBe("strict");
    expect(setting(settings, "RestrictAddressFamilies")).toBe("AF_INET AF_INET6 AF_UNIX");
    expect(settings.has("MemoryDenyWriteExecute")).toBe(false);
  });

  it("grants the RLIMIT_NOFILE the proxy asks for with the shipped config", async () => {
    const limit = Number(setting(settings, "LimitNOFILE"));
    const argv = toCheckout(setting(settings, "ExecStart") ?? "").split(/\s+/);
    // Started below the budget (raising a hard limit needs CAP_SYS_RESOURCE, which a test
    // machine may lack): the warn line names the descriptors the proxy needs, which must be
    // the unit's LimitNOFILE exactly.
    const child = spawn("prlimit", ["--nofile=1024:1024", "--", ...argv, "--listen", "127.0.0.1:0", "--admin", "off"], { stdio: ["pipe", "pipe", "pipe"] });
    const log = new ChildLog<ProxyLogLine>(child, "proxy");
    onTestFinished(() => log.stop(() => child.kill("SIGTERM"), 3_000));
    await log.entries.waitFor((l) => l.msg === "listening", 30_000, "the listening line");
    const warn = log.entries.find((l) => l.level === "warn" && "descriptorsNeeded" in l);
    expect(warn).toMatchObject({ softLimit: 1024, maxConnections: config.limits.maxConnections, descriptorsNeeded: limit });
    expect(String(warn?.fix)).toContain(`LimitNOFILE=${limit}`);
  });
});
