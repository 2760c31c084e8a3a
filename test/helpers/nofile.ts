// A process's descriptor limit (RLIMIT_NOFILE), read from /proc and set with
// prlimit(1), so a test can give the proxy child the limit of the scenario it
// reproduces, or give itself room for thousands of sockets.

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** The soft and hard RLIMIT_NOFILE of `pid`. */
export function nofileOf(pid: number): { soft: number; hard: number } {
  const line = readFileSync(`/proc/${pid}/limits`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("Max open files"));
  const [soft, hard] = (line?.match(/\d+|unlimited/g) ?? []).map((v) => (v === "unlimited" ? Number.POSITIVE_INFINITY : Number(v)));
  if (soft === undefined || hard === undefined) throw new Error(`no "Max open files" line in /proc/${pid}/limits`);
  return { soft, hard };
}

/** Sets both limits of `pid` to `limit` (raising the hard one needs root, as in the test containers). */
export function setNofile(pid: number, limit: number): void {
  execFileSync("prlimit", ["--pid", String(pid), `--nofile=${limit}:${limit}`]);
  const now = nofileOf(pid);
  if (now.soft !== limit) throw new Error(`prlimit left pid ${pid} at ${now.soft} descriptors, not ${limit}`);
}

/** Raises `pid`'s limit to at least `needed` when it is lower; never lowers it. */
export function ensureNofile(pid: number, needed: number): void {
  if (nofileOf(pid).soft < needed) setNofile(pid, needed);
}
