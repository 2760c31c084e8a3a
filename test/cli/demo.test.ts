import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it, onTestFinished } from "vitest";

describe("npm run demo", () => {
  it("shows bytes flowing through the shipped config and stops cleanly", async () => {
    const root = fileURLToPath(new URL("../..", import.meta.url));
    const child = spawn(process.execPath, ["scripts/demo.mjs", "--rounds", "2"], { cwd: root });
    onTestFinished(() => {
      if (child.exitCode === null) child.kill("SIGTERM");
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (out += s));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(code, out).toBe(0);
    expect(out).toContain("got back: HELLO THROUGH THE PROXY, ROUND 2");
    expect(out.match(/session closed/g)).toHaveLength(2);
    expect(out).toMatch(/"bytesFromClient":33,"bytesFromUpstream":33/);
  }, 30_000);
});
