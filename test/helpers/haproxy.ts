import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onTestFinished } from "vitest";
import { waitUntil } from "./in-process-proxy.js";

/**
 * Runs HAProxy (Debian's package) in the foreground with the given config
 * body, waits until `port` accepts, and kills it when the test finishes.
 */
export async function startHaproxy(body: string, port: number): Promise<ChildProcess> {
  const dir = mkdtempSync(join(tmpdir(), "kp-haproxy-"));
  const file = join(dir, "haproxy.cfg");
  writeFileSync(file, `global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n${body}\n`);
  let stderr = "";
  const child = spawn("haproxy", ["-db", "-f", file], { stdio: ["ignore", "ignore", "pipe"] });
  child.stderr?.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  onTestFinished(() => {
    child.kill("SIGKILL");
  });
  await waitUntil(
    () => {
      if (child.exitCode !== null) throw new Error(`haproxy exited: ${stderr}`);
      return canConnect.get(port);
    },
    10_000,
    `haproxy on port ${port}`,
  ).catch((error: unknown) => {
    throw new Error(`${String(error)}\n${stderr}`);
  });
  return child;
}

// Polled by waitUntil: each probe starts a connect and records the result for the next poll.
const canConnect = {
  pending: new Map<number, boolean>(),
  get(port: number): true | undefined {
    if (this.pending.get(port) === true) {
      this.pending.delete(port);
      return true;
    }
    const s = connect(port, "127.0.0.1");
    s.on("connect", () => {
      this.pending.set(port, true);
      s.destroy();
    });
    s.on("error", () => s.destroy());
    return undefined;
  },
};

/** A free loopback port (bound and released; good enough for a test's lifetime). */
export async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
