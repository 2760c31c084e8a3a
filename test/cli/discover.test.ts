// `keepalive-proxy discover` as a user runs it, on loopback: its flags, the
// 64-rung limit, --json, and --listener reading the upstream and its
// keepalive idle from a config file. The path measurements themselves are in
// test/netns/discover.test.ts.

import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MAX_RUNGS } from "../../src/discover/ladder.js";
import { CLI, runCli } from "../helpers/run-cli.js";
import { startServer } from "../helpers/tcp.js";
import { runTool, toolSupport } from "../helpers/tools.js";


function writeConfig(yaml: string): string {
  const file = join(mkdtempSync(join(tmpdir(), "kp-discover-")), "config.yaml");
  writeFileSync(file, yaml);
  return file;
}

const script = toolSupport("script");
/** What a terminal is told to erase the current line: where the progress line is redrawn. */
const REDRAW = "\r\x1b[2K";

const wholeSeconds = (n: number): string => Array.from({ length: n }, (_, i) => `${i + 1}s`).join(",");

describe("keepalive-proxy discover", () => {
  it(`refuses a ladder of more than ${MAX_RUNGS} rungs with exit 2, naming --ladder, and opens no connection`, async () => {
    const { port, server } = await startServer();
    let connections = 0;
    server.on("connection", () => connections++);
    const over = await runCli(["discover", "--upstream", `127.0.0.1:${port}`, "--ladder", wholeSeconds(MAX_RUNGS + 1)]);
    expect(over.code).toBe(2);
    expect(over.stderr).toContain(`--ladder has ${MAX_RUNGS + 1} rungs; at most ${MAX_RUNGS} are allowed`);
    expect(over.stdout).toBe("");
    expect(connections).toBe(0);
  });

  it.each([
    [["--ladder", "1s"], "give either --upstream HOST:PORT or --listener NAME"],
    [["--upstream", "127.0.0.1:1", "--ladder", "1.5s"], "--ladder: 1.5s is not whole seconds"],
    [["--upstream", "127.0.0.1:1", "--ladder", "1s,,2s"], '--ladder "1s,,2s" has an empty entry'],
    [["--upstream", "127.0.0.1:1", "--max", "soon"], '--max: "soon" is not a duration'],
    [["--upstream", "127.0.0.1:1", "--max", "10h"], "--max: 10h is out of range"],
    [["--upstream", "127.0.0.1:1", "--max", "5m", "--ladder", "1s"], "give --ladder or --max, not both"],
    [["--upstream", "db.internal", "--ladder", "1s"], "--upstream:"],
  ])("exits 2 with a message naming the flag for discover %j", async (args, message) => {
    const result = await runCli(["discover", ...args]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it("exits 3 and names the error when the upstream's name does not resolve", async () => {
    const result = await runCli(["discover", "--upstream", "no-such-host.invalid:5432", "--ladder", "1s"]);
    expect(result.code, result.stderr).toBe(3);
    expect(result.stdout).toMatch(/^no-such-host\.invalid:5432: does not resolve \((ENOTFOUND|EAI_AGAIN)\)$/m);
  });

  it("prints one JSON document, with no progress line when stdout is not a terminal", async () => {
    const { port } = await startServer();
    const result = await runCli(["discover", "--upstream", `127.0.0.1:${port}`, "--ladder", "1s", "--json"]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).not.toContain("\r");
    const doc = JSON.parse(result.stdout) as { addresses: { address: string; rungs: { idleS: number; result: string }[] }[]; verdict: { kind: string } };
    expect(doc.addresses).toEqual([
      {
        upstream: `127.0.0.1:${port}`,
        address: `127.0.0.1:${port}`,
        reachable: true,
        errno: null,
        rungs: [expect.objectContaining({ idleS: 1, result: "survived", bytesReceived: 0 })],
      },
    ]);
    expect(doc.verdict.kind).toBe("kept");
  });

  it("measures a listener's upstream from --config and judges its configured keepalive idle", async () => {
    const { port } = await startServer();
    const file = writeConfig(`
listeners:
  - name: db
    listen: 127.0.0.1:0
    upstream:
      address: 127.0.0.1:${port}
      keepalive: { idle: 2s }
`);
    const result = await runCli(["discover", "--config", file, "--listener", "db", "--ladder", "1s,2s"]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^discover listener db: ladder 1s,2s/);
    expect(result.stdout).toContain(`127.0.0.1:${port}\n`);
    expect(result.stdout).toMatch(/^verdict: no idle timeout up to 2s; .*listener db's upstream keepalive idle 2s is safe/m);

    const missing = await runCli(["discover", "--config", file, "--listener", "web", "--ladder", "1s"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--listener: no listener named "web" in the config (listeners: db)');
  });

  it.skipIf(!script.ok)("draws a progress line naming the waiting rungs on a terminal, and erases it before the report", async () => {
    const { port } = await startServer();
    const ladder = "1s,2s";
    // script(1) gives the CLI a pseudo-terminal as stdout.
    const cmd = [process.execPath, CLI, "discover", "--upstream", `127.0.0.1:${port}`, "--ladder", ladder].join(" ");
    const result = await runTool(["script", "-qec", cmd, "/dev/null"]);
    expect(result.code, result.stdout).toBe(0);
    const out = result.stdout.replace(/\r\n/g, "\n");
    expect(out).toContain(`${REDRAW}waiting for 2 rungs: ${ladder.replace(",", ", ")};`);
    expect(out).toContain(`${REDRAW}discover 127.0.0.1:${port}: ladder ${ladder}`);
  });
});
