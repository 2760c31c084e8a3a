// External programs some tests need (promtool, prometheus), found on PATH, and
// the one runner for a command whose output a test reads (netns.ts runs ip and
// nft through it too).
// In CI a missing one is a failure, never a skip: scripts/install-system-deps.sh
// installs them, so their absence there means the machine is broken.

import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/** Whether the tests needing `command` can run here, and why not. */
export type ToolSupport = { ok: true; path: string } | { ok: false; reason: string };

/** Finds `command` on PATH; in CI (CI=true) always answers ok so that a missing tool fails loudly. */
export function toolSupport(command: string): ToolSupport {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const path = join(dir, command);
    try {
      accessSync(path, constants.X_OK);
      return { ok: true, path };
    } catch {
      // not in this directory
    }
  }
  if (process.env.CI === "true") return { ok: true, path: command };
  return { ok: false, reason: `${command} is not installed (scripts/install-system-deps.sh installs it)` };
}

/** What a finished command printed and its exit status. */
export interface ToolResult {
  readonly code: number | null;
  /** The signal that ended it, when no exit code. */
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs argv (no shell) with `input` on stdin; resolves whatever the exit status. */
export function runTool(argv: readonly string[], { input, cwd }: { input?: string | undefined; cwd?: string } = {}): Promise<ToolResult> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) return Promise.reject(new Error("runTool: empty argv"));
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => {
      stdout += s;
    });
    child.stderr.setEncoding("utf8").on("data", (s: string) => {
      stderr += s;
    });
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
    // A command that exits without reading its stdin must not crash the test with EPIPE.
    child.stdin.on("error", () => undefined);
    child.stdin.end(input ?? "");
  });
}
