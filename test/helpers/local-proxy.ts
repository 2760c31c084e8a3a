import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onTestFinished } from "vitest";
import { ProxyProcess } from "./proxy-process.js";

/** Starts the CLI as a child process in the test's own network namespace; stopped when the test finishes. */
export function startLocalProxy(args: readonly string[]): Promise<ProxyProcess> {
  return ProxyProcess.start(undefined, { defer: (fn) => onTestFinished(async () => await fn()) }, args);
}

/** Writes a YAML config into a fresh temporary directory and returns its path. */
export function writeTempConfig(yaml: string): string {
  const file = join(mkdtempSync(join(tmpdir(), "kp-")), "keepalive-proxy.yaml");
  writeFileSync(file, yaml);
  return file;
}

/** The resident set size of a process in bytes, from /proc. */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return Number(kb) * 1024;
}
