import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MAX_TIMER_MS } from "../../src/util/duration.js";
import { type CliResult, runCli } from "../helpers/run-cli.js";

function writeConfig(yaml: string): string {
  const file = join(mkdtempSync(join(tmpdir(), "kp-cfgerr-")), "config.yaml");
  writeFileSync(file, yaml);
  return file;
}

/** A one-listener config with `extra` lines added to the listener. */
function listenerConfig(extra: string): string {
  return `admin: { listen: null }\nlisteners:\n  - name: a\n    listen: 127.0.0.1:0\n    upstream: { address: 127.0.0.1:1 }\n${extra}`;
}

/** Exit 2, exactly one line on stderr, no stack trace, and that line returned. */
function oneLineRefusal(result: CliResult): string {
  expect(result.code, result.stderr).toBe(2);
  const lines = result.stderr.trimEnd().split("\n");
  expect(lines, result.stderr).toHaveLength(1);
  expect(result.stderr).not.toMatch(/\n\s+at |Error:/);
  return lines[0] as string;
}

const ALIAS_BOMB = `a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
listeners: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
`;

describe("durations a timer cannot hold", () => {
  it("check refuses maxSessionDuration: 30d and connectTimeout: 25d, naming each field and the maximum", async () => {
    const file = writeConfig(
      "admin: { listen: null }\nlisteners:\n  - name: a\n    listen: 127.0.0.1:0\n    upstream: { address: 127.0.0.1:1, connectTimeout: 25d }\n    maxSessionDuration: 30d\n",
    );
    const result = await runCli(["check", "--config", file]);
    expect(result.code, result.stderr).toBe(2);
    const lines = result.stderr.trim().split("\n").slice(1);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`listeners\\[0\\]\\.upstream\\.connectTimeout: "25d" .*the most is ${MAX_TIMER_MS}ms \\(about 24\\.8 days\\)`));
    expect(lines[1]).toMatch(new RegExp(`listeners\\[0\\]\\.maxSessionDuration: "30d" .*the most is ${MAX_TIMER_MS}ms`));
  });

  it("accepts the longest duration a timer holds, and one millisecond more is refused", async () => {
    const ok = await runCli(["check", "--config", writeConfig(listenerConfig(`    idleTimeout: ${MAX_TIMER_MS}ms\n`))]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`idleTimeout: ${MAX_TIMER_MS}ms`);
    const over = await runCli(["check", "--config", writeConfig(listenerConfig(`    idleTimeout: ${MAX_TIMER_MS + 1}ms\n`))]);
    expect(oneLineRefusal(over)).toMatch(/listeners\[0\]\.idleTimeout: .*longer than a timer can hold/);
  });

  it("refuses a flag or variable over the bound too, naming it", async () => {
    const result = await runCli(["check", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--admin", "off"], {
      env: { KEEPALIVE_PROXY_DRAIN_TIMEOUT: "25d" },
    });
    expect(oneLineRefusal(result)).toMatch(/KEEPALIVE_PROXY_DRAIN_TIMEOUT: "25d" is longer than a timer can hold/);
  });

  it("refuses a retryBackoff whose doubling outgrows a timer, and says the most it may be", async () => {
    const result = await runCli([
      "check",
      "--config",
      writeConfig(listenerConfig("").replace("address: 127.0.0.1:1", "address: 127.0.0.1:1, retries: 3, retryBackoff: 7d")),
    ]);
    expect(oneLineRefusal(result)).toMatch(/listeners\[0\]\.upstream\.retryBackoff: .*with 3 retries .*write at most \d+s/);
  });

  it("accepts headerTimeout: 0 (off) and refuses connectTimeout: 0 saying there is no off", async () => {
    const proxyProtocol = "    client: { proxyProtocol: { accept: v2, trustedSources: [127.0.0.1/32], headerTimeout: 0 } }\n";
    const ok = await runCli(["check", "--config", writeConfig(listenerConfig(proxyProtocol))]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain("headerTimeout: 0s");
    const zero = await runCli([
      "check",
      "--config",
      writeConfig(listenerConfig("").replace("address: 127.0.0.1:1", "address: 127.0.0.1:1, connectTimeout: 0")),
    ]);
    expect(oneLineRefusal(zero)).toMatch(/connectTimeout: connect timeout must be more than 0 \(there is no "off"/);
  });
});

describe("YAML alias problems are config errors", () => {
  it("check and startup exit 2 with one line for an alias with no anchor", async () => {
    const file = writeConfig(listenerConfig("    client:\n      keepalive: *undefinedAlias\n"));
    for (const args of [
      ["check", "--config", file],
      ["--config", file],
    ]) {
      const line = oneLineRefusal(await runCli(args));
      expect(line).toBe(
        `keepalive-proxy: invalid config (${file}): ${file} line 7 column 18: alias *undefinedAlias has no anchor; define &undefinedAlias on an earlier value, or write the value out`,
      );
    }
  });

  it("check exits 2 with one line for an alias bomb", async () => {
    const file = writeConfig(ALIAS_BOMB);
    expect(oneLineRefusal(await runCli(["check", "--config", file]))).toMatch(/aliases expand to too many values .*alias bomb/);
  });
});

describe("messages say what to write", () => {
  const single = ["check", "--upstream", "127.0.0.1:1", "--admin", "off"];

  it("--listen 8080: a bare port is not HOST:PORT, with the fix", async () => {
    const line = oneLineRefusal(await runCli([...single, "--listen", "8080"]));
    expect(line).toContain('--listen: "8080" is a bare port, not HOST:PORT; write 0.0.0.0:8080');
  });

  it("KEEPALIVE_PROXY_ADMIN=9464: a bare port is not HOST:PORT, with the fix", async () => {
    const result = await runCli(["check", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1"], { env: { KEEPALIVE_PROXY_ADMIN: "9464" } });
    expect(oneLineRefusal(result)).toContain('KEEPALIVE_PROXY_ADMIN: "9464" is a bare port, not HOST:PORT; write 0.0.0.0:9464');
  });

  it("listen: 8080 in the file (a YAML number) gets the same fix", async () => {
    const file = writeConfig("admin: { listen: null }\nlisteners:\n  - name: a\n    listen: 8080\n    upstream: { address: 127.0.0.1:1 }\n");
    expect(oneLineRefusal(await runCli(["check", "--config", file]))).toContain(
      'listeners[0].listen: "8080" is a bare port, not HOST:PORT; write 0.0.0.0:8080',
    );
  });

  it("KEEPALIVE_PROXY_KEEPALIVE_COUNT=3.5 says a whole number is needed", async () => {
    const result = await runCli([...single, "--listen", "127.0.0.1:0"], { env: { KEEPALIVE_PROXY_KEEPALIVE_COUNT: "3.5" } });
    expect(oneLineRefusal(result)).toContain('KEEPALIVE_PROXY_KEEPALIVE_COUNT: "3.5" is not a whole number; write a whole number');
  });

  it("KEEPALIVE_PROXY_NODELAY=1 says to write true or false", async () => {
    const result = await runCli([...single, "--listen", "127.0.0.1:0"], { env: { KEEPALIVE_PROXY_NODELAY: "1" } });
    expect(oneLineRefusal(result)).toContain('KEEPALIVE_PROXY_NODELAY: "1" is not a switch value; write true or false');
    const ok = await runCli([...single, "--listen", "127.0.0.1:0"], { env: { KEEPALIVE_PROXY_NODELAY: "false" } });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain("default client: SO_KEEPALIVE=1 TCP_KEEPIDLE=60s TCP_KEEPINTVL=10s TCP_KEEPCNT=3 TCP_USER_TIMEOUT=90000ms TCP_NODELAY=0");
  });

  it.each(["[]:0", "[db]:5432", "db host:5432", "127.0.0.1:", "[::1]5432"])("refuses the malformed listen address %j", async (address) => {
    const file = writeConfig(`admin: { listen: null }\nlisteners:\n  - name: a\n    listen: "${address}"\n    upstream: { address: 127.0.0.1:1 }\n`);
    expect(oneLineRefusal(await runCli(["check", "--config", file]))).toMatch(/listeners\[0\]\.listen: /);
  });

  it("--user-timeout -1s (a negative value after a space) names the flag", async () => {
    const line = oneLineRefusal(await runCli([...single, "--listen", "127.0.0.1:0", "--user-timeout", "-1s"]));
    expect(line).toContain('--user-timeout: "-1s" is not a duration (durations cannot be negative)');
  });
});
