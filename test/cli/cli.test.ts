import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { runCli } from "../helpers/run-cli.js";
import { startServer } from "../helpers/tcp.js";

function writeConfig(yaml: string): string {
  const file = join(mkdtempSync(join(tmpdir(), "kp-cli-")), "config.yaml");
  writeFileSync(file, yaml);
  return file;
}

describe("the CLI", () => {
  it("exits 2 with one line per mistake, naming each path, and no stack trace", async () => {
    const file = writeConfig(`
listeners:
  - name: db
    listen: 127.0.0.1:6432
    upstream:
      address: db.internal
      keepalive: { interval: 0s }
    idleTimeot: 5m
`);
    const result = await runCli(["check", "--config", file]);
    expect(result.code).toBe(2);
    const lines = result.stderr.trim().split("\n").slice(1);
    expect(lines).toHaveLength(3);
    expect(result.stderr).toContain("listeners[0].upstream.address:");
    expect(result.stderr).toContain("listeners[0].upstream.keepalive.interval:");
    expect(result.stderr).toContain("listeners[0].idleTimeot: unknown key");
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it("names the variable when an environment value is nonsense", async () => {
    const result = await runCli(["check", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1"], { env: { KEEPALIVE_PROXY_KEEPALIVE_INTERVAL: "soon" } });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('KEEPALIVE_PROXY_KEEPALIVE_INTERVAL: "soon" is not a duration');
  });

  it("names the flag when a flag is nonsense", async () => {
    const result = await runCli(["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--keepalive-count", "0"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--keepalive-count: keepalive count must be at least 1");
  });

  it("takes settings from KEEPALIVE_PROXY_* variables, flags winning", async () => {
    const result = await runCli(["check", "--keepalive-idle", "20s"], {
      env: {
        KEEPALIVE_PROXY_LISTEN: "127.0.0.1:7000",
        KEEPALIVE_PROXY_UPSTREAM: "127.0.0.1:7001",
        KEEPALIVE_PROXY_KEEPALIVE_IDLE: "5s",
        KEEPALIVE_PROXY_KEEPALIVE_COUNT: "4",
        // Kubernetes service links for a Service named keepalive-proxy: not settings, must be ignored.
        KEEPALIVE_PROXY_SERVICE_HOST: "10.96.0.10",
        KEEPALIVE_PROXY_PORT: "tcp://10.96.0.10:7000",
      },
    });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("default upstream: SO_KEEPALIVE=1 TCP_KEEPIDLE=20s TCP_KEEPINTVL=10s TCP_KEEPCNT=4 TCP_USER_TIMEOUT=60000ms");
  });

  it("check prints the effective config and each leg's socket options", async () => {
    const result = await runCli(["check", "--config", "config/keepalive-proxy.yaml", "--upstream-keepalive-idle", "30s"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("drainTimeout: 30s");
    expect(result.stdout).toContain("demo client: SO_KEEPALIVE=1 TCP_KEEPIDLE=60s TCP_KEEPINTVL=10s TCP_KEEPCNT=3 TCP_USER_TIMEOUT=90000ms TCP_NODELAY=1");
    expect(result.stdout).toContain("demo upstream: SO_KEEPALIVE=1 TCP_KEEPIDLE=30s TCP_KEEPINTVL=10s TCP_KEEPCNT=3 TCP_USER_TIMEOUT=60000ms TCP_NODELAY=1");
  });

  it("check --connect reads the options back from a reachable upstream and fails on an unreachable one", async () => {
    const up = await startServer();
    const ok = await runCli(["check", "--connect", "--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${up.port}`, "--keepalive-idle", "9s"]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/default upstream 127\.0\.0\.1:\d+: reachable .* kernel reports SO_KEEPALIVE=1 TCP_KEEPIDLE=9s/);

    const closed = await startServer().then(async ({ server, port }) => {
      await new Promise((r) => server.close(r));
      return port;
    });
    const bad = await runCli(["check", "--connect", "--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${closed}`]);
    expect(bad.code).toBe(3);
    expect(bad.stdout).toMatch(/UNREACHABLE \(refused, ECONNREFUSED\)/);
  });

  it("exits 1 with one clear line when the listen port is taken", async () => {
    const taken = await startServer();
    const result = await runCli(["--listen", `127.0.0.1:${taken.port}`, "--upstream", "127.0.0.1:1", "--admin", "off"]);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(/cannot listen on 127\.0\.0\.1:\d+: the address is already in use/);
  });

  it("exits 1 with one clear line for an address this host does not have", async () => {
    const result = await runCli(["--listen", "192.0.2.1:7000", "--upstream", "127.0.0.1:1", "--admin", "off"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/EADDRNOTAVAIL/);
  });

  it("exits 1 with one clear line for a listen host name that does not resolve", async () => {
    const result = await runCli(["--listen", "no-such-host.invalid:7000", "--upstream", "127.0.0.1:1", "--admin", "off"]);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(/does not resolve \((ENOTFOUND|EAI_AGAIN)\)/);
  });

  it("--help teaches with examples and --version prints the version", async () => {
    const help = await runCli(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--keepalive-idle");
    const text = help.stdout.replace(/\s+/g, " ");
    expect(text).toContain("Behind a NAT that forgets idle flows after 5 minutes");
    expect(text).toContain("In front of a database");
    expect(text).toContain("Find a dead peer within 30 s");
    expect(help.stdout).toContain("Exit codes:");
    const version = await runCli(["--version"]);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it("rejects an unknown flag with exit 2", async () => {
    const result = await runCli(["--keepalive-idel", "5s"]);
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toMatch(/Unknown argument/);
  });

  it("check prints every duration in a form that reads back as the same value", async () => {
    const file = writeConfig(`
admin: { listen: null }
shutdown: { drainTimeout: 1500ms }
listeners:
  - name: a
    listen: 127.0.0.1:0
    upstream:
      addresses: [127.0.0.1:1, "[::1]:2"]
      retryBackoff: 250ms
      cooldown: 30000
      connectTimeout: 1.5s
    client:
      proxyProtocol: { accept: v1, trustedSources: [127.0.0.1/32], headerTimeout: 0 }
    maxSessionDuration: 36h
`);
    const first = await runCli(["check", "--config", file]);
    expect(first.code, first.stderr).toBe(0);
    const printed = printedConfig(first.stdout);
    expect(printed).toContain("cooldown: 500m");
    expect(printed).toContain("retryBackoff: 250ms");
    const second = await runCli(["check", "--config", writeConfig(printed)]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toBe(first.stdout);
  });

  it.each([
    { name: "check", command: ["check"] },
    { name: "run", command: [] },
  ])("$name exits 1 with the platform message on a system that is not Linux", async ({ command }) => {
    const preload = fileURLToPath(new URL("fixtures/pretend-platform.mjs", import.meta.url));
    const result = await runCli([...command, "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--admin", "off"], {
      env: { NODE_OPTIONS: `--import=${preload}`, PRETEND_PLATFORM: "darwin" },
    });
    expect(result.code, result.stderr).toBe(1);
    expect(result.stderr).toBe("keepalive-proxy: Linux is needed (TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT are Linux socket options); this is darwin\n");
    expect(result.stdout).toBe("");
  });
});

/** The YAML part of check's output: between its heading and the socket options. */
function printedConfig(stdout: string): string {
  const start = stdout.indexOf("# effective config");
  const end = stdout.indexOf("# socket options");
  return stdout.slice(start, end);
}
