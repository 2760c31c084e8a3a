// What a process holds and which processes are left, read from /proc: the
// observables for "nothing listens" and "nothing is left behind".

import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/** TCP ports `pid` listens on: its socket inodes matched against its network namespace's listening sockets. */
export function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of safe(() => readdirSync(`/proc/${pid}/fd`), [])) {
    const link = safe(() => readlinkSync(`/proc/${pid}/fd/${fd}`), "");
    const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
    if (inode) inodes.add(inode);
  }
  const ports: number[] = [];
  for (const table of ["tcp", "tcp6"]) {
    for (const line of safe(() => readFileSync(`/proc/${pid}/net/${table}`, "utf8"), "")
      .split("\n")
      .slice(1)) {
      const fields = line.trim().split(/\s+/);
      // sl local_address rem_address st ... inode (field 9); st 0A is LISTEN.
      if (fields[3] === "0A" && inodes.has(fields[9] ?? "")) ports.push(Number.parseInt(fields[1]?.split(":")[1] ?? "", 16));
    }
  }
  return ports.sort((a, b) => a - b);
}

/**
 * The ports `pid` and its child processes (a supervisor's workers) listen on,
 * each port once: every worker has its own socket on the same port.
 */
export function treeListeningPorts(pid: number): number[] {
  const children = safe(() => readdirSync(`/proc/${pid}/task`), [] as string[]).flatMap((task) =>
    safe(() => readFileSync(`/proc/${pid}/task/${task}/children`, "utf8"), "")
      .split(/\s+/)
      .filter(Boolean)
      .map(Number),
  );
  return [...new Set([pid, ...children].flatMap((p) => listeningPorts(p)))].sort((a, b) => a - b);
}

/** Whether `pid` has a handler installed for signal number `signo` (its SigCgt mask). */
export function catchesSignal(pid: number, signo: number): boolean {
  const mask = /SigCgt:\s*([0-9a-f]+)/.exec(safe(() => readFileSync(`/proc/${pid}/status`, "utf8"), ""))?.[1];
  return mask !== undefined && (BigInt(`0x${mask}`) & (1n << BigInt(signo - 1))) !== 0n;
}

/** The pids (with their command lines) of every live process in process group `pgid`. */
export function processGroup(pgid: number): { pid: number; cmd: string }[] {
  const found: { pid: number; cmd: string }[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = safe(() => readFileSync(`/proc/${entry}/stat`, "utf8"), "");
    // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after the last ')'.
    const after = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (after[0] === "Z" || Number(after[2]) !== pgid) continue;
    found.push({ pid: Number(entry), cmd: safe(() => readFileSync(`/proc/${entry}/cmdline`, "utf8").replace(/\0/g, " ").trim(), "") });
  }
  return found;
}

function safe<T>(read: () => T, fallback: T): T {
  try {
    return read();
  } catch {
    return fallback; // the process ended while being read
  }
}
