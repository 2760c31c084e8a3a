import { type ChildProcess, spawn } from "node:child_process";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";
import { describe, expect, it, onTestFinished } from "vitest";
import { waitUntil } from "../helpers/in-process-proxy.js";
import { processGroup } from "./processes.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
// Free ports: the kernel chooses; the demo's defaults (7000, 7001, 9464) may be taken on a CI machine.
const FREE_PORTS = ["--port", "0", "--upstream-port", "0", "--admin-port", "0"];

/** Starts `command` in a process group of its own, so the test can signal and inspect the whole group. */
function startGroup(command: string, args: readonly string[]): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(command, args, { cwd: root, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const pgid = child.pid ?? 0;
  onTestFinished(() => {
    for (const { pid } of processGroup(pgid)) process.kill(pid, "SIGKILL");
  });
  let out = "";
  child.stdout?.setEncoding("utf8").on("data", (s: string) => (out += s));
  child.stderr?.setEncoding("utf8").on("data", (s: string) => (out += s));
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  return { child, output: () => out, exited };
}

/** Every port the demo printed: the line service's, and the proxy's listener and admin server. */
function portsIn(output: string): number[] {
  const ports = [...output.matchAll(/127\.0\.0\.1:(\d+) \(answers|"port":(\d+)/g)].map((m) => Number(m[1] ?? m[2]));
  return [...new Set(ports)];
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.on("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.on("error", (error: NodeJS.ErrnoException) => resolve(error.code === "ECONNREFUSED"));
  });
}

/** Nothing of the group is left, and no port the demo used still accepts. */
async function expectNothingLeft(pgid: number, ports: readonly number[], output: string): Promise<void> {
  await waitUntil(() => processGroup(pgid).length === 0 || undefined, 15_000, `the demo's processes to end: ${JSON.stringify(processGroup(pgid))}\n${output}`);
  for (const port of ports) expect(await refused(port), `port ${port} still accepts`).toBe(true);
}

describe("npm run demo", () => {
  it("shows bytes flowing through the shipped config and stops cleanly", async () => {
    const demo = startGroup(process.execPath, ["scripts/demo.mjs", "--rounds", "2", ...FREE_PORTS]);
    const code = await demo.exited;
    const out = demo.output();
    expect(code, out).toBe(0);
    expect(out).toContain("got back: HELLO THROUGH THE PROXY, ROUND 2");
    expect(out.match(/session closed/g)).toHaveLength(2);
    expect(out).toMatch(/"bytesFromClient":33,"bytesFromUpstream":33/);
    await expectNothingLeft(demo.child.pid ?? 0, portsIn(out), out);
  }, 30_000);

  it("`npm run demo | head -3` leaves no process and no bound port behind", async () => {
    const shell = startGroup("sh", ["-c", `node scripts/demo.mjs ${FREE_PORTS.join(" ")} | head -3`]);
    await shell.exited;
    const out = shell.output();
    expect(out.trimEnd().split("\n"), out).toHaveLength(3);
    const ports = portsIn(out);
    expect(ports.length, out).toBeGreaterThanOrEqual(2);
    await expectNothingLeft(shell.child.pid ?? 0, ports, out);
  }, 30_000);

  it.each([
    { signal: "SIGHUP", to: "its process group (a closed terminal)" },
    { signal: "SIGINT", to: "its process group (Ctrl-C)" },
    { signal: "SIGTERM", to: "the demo alone" },
  ] as const)(
    "$signal to $to leaves no process and no bound port behind",
    async ({ signal, to }) => {
      const demo = startGroup(process.execPath, ["scripts/demo.mjs", ...FREE_PORTS]);
      const pgid = demo.child.pid ?? 0;
      await waitUntil(() => demo.output().includes("got back: HELLO") || undefined, 20_000, "the first session through the demo");
      const ports = portsIn(demo.output());
      process.kill(to.startsWith("its process group") ? -pgid : pgid, signal);
      expect(await demo.exited, demo.output()).toBe(0);
      await expectNothingLeft(pgid, ports, demo.output());
    },
    30_000,
  );
});
