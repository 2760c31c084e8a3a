// Starts test/helpers/ns-bridge.mjs in a namespace: a Unix socket in a
// temporary directory that leads to HOST:PORT inside the namespace.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { Namespace, Teardown } from "./netns.js";

const BRIDGE_SCRIPT = fileURLToPath(new URL("./ns-bridge.mjs", import.meta.url));

/**
 * Opens a bridge to host:port in `ns` and resolves with the Unix socket path
 * to connect to. The bridge process and its directory are removed by
 * `teardown`, registered before anything is started.
 */
export async function bridgeInto(ns: Namespace, teardown: Teardown, host: string, port: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "kp-bridge-"));
  teardown.defer(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = join(dir, "bridge.sock");
  const child = spawn("ip", ["netns", "exec", ns.name, process.execPath, BRIDGE_SCRIPT, socketPath, host, String(port)], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  teardown.defer(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.stdin.end();
    const timer = setTimeout(() => child.kill("SIGKILL"), 2_000);
    await exited;
    clearTimeout(timer);
  });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (s: string) => {
    stderr += s;
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ns-bridge to ${host}:${port} in ${ns.name} did not start: ${stderr}`)), 10_000);
    createInterface({ input: child.stdout }).once("line", () => {
      clearTimeout(timer);
      resolve();
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      reject(new Error(`ns-bridge exited (${code}): ${stderr}`));
    });
  });
  return socketPath;
}
