import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { configJsonSchema, configJsonSchemaText } from "../../src/config/json-schema.js";
import { loadConfig, parseConfigText } from "../../src/config/load.js";
import { legOptions, listenerSettings } from "../../src/config/settings.js";
import { writtenConfig } from "../../src/config/written-form.js";
import { MAX_TIMER_MS } from "../../src/util/duration.js";
import { stringify } from "yaml";
import { flag, problemsOf } from "../helpers/config-problems.js";

function writeConfig(yaml: string): string {
  const file = join(mkdtempSync(join(tmpdir(), "kp-config-")), "config.yaml");
  writeFileSync(file, yaml);
  return file;
}



describe("config loading", () => {
  it("fills defaults: 60s/10s/3 keepalive, user timeout derived as idle + interval × count", () => {
    const config = loadConfig({ file: undefined, overrides: [flag("listen", ":7000"), flag("upstream", "db:5432")] });
    const listener = config.listeners[0];
    expect(listener?.name).toBe("default");
    expect(listener?.listen).toEqual({ host: "0.0.0.0", port: 7000 });
    expect(listener?.upstream.connectTimeout).toBe(10_000);
    expect(listener?.idleTimeout).toBe(0);
    if (!listener) throw new Error("no listener");
    expect(legOptions(listener.upstream.keepalive, true)).toEqual({
      keepalive: true,
      keepaliveIdleMs: 60_000,
      keepaliveIntervalMs: 10_000,
      keepaliveCount: 3,
      userTimeoutMs: 90_000,
      noDelay: true,
    });
    expect(config.shutdown.drainTimeout).toBe(30_000);
    expect(config.admin.listen).toEqual({ host: "127.0.0.1", port: 9464 });
  });

  it("applies defaults < file < flags, both-leg flags before one-leg flags", () => {
    const file = writeConfig(`
listeners:
  - name: pg
    listen: 127.0.0.1:6432
    upstream:
      address: db:5432
      keepalive: { idle: 30s, count: 5 }
`);
    const config = loadConfig({ file, overrides: [flag("upstream-keepalive-idle", "5s"), flag("keepalive-idle", "20s")] });
    const l = config.listeners[0];
    expect(l?.client.keepalive.idle).toBe(20_000);
    expect(l?.upstream.keepalive.idle).toBe(5_000);
    expect(l?.upstream.keepalive.count).toBe(5);
  });

  it("reports every problem at once, each with its path", () => {
    const file = writeConfig(`
listeners:
  - name: a
    listen: 127.0.0.1:6432
    upstream: { address: db:5432 }
  - name: b
    listen: 127.0.0.1:6433
    upstream:
      address: db
      keepalive: { interval: 0.5s, countt: 3 }
`);
    const problems = problemsOf(() => loadConfig({ file, overrides: [] }));
    expect(problems).toHaveLength(3);
    expect(problems.join("\n")).toContain("listeners[1].upstream.address:");
    expect(problems.join("\n")).toContain("listeners[1].upstream.keepalive.interval:");
    expect(problems.join("\n")).toContain("listeners[1].upstream.keepalive.countt: unknown key");
  });

  it("names the flag for nonsense flag values", () => {
    const problems = problemsOf(() =>
      loadConfig({
        file: undefined,
        overrides: [flag("listen", ":1"), flag("upstream", "x:1"), flag("keepalive-idle", "500ms"), flag("keepalive-count", "0"), flag("user-timeout", "-1s")],
      }),
    );
    expect(problems).toHaveLength(3);
    expect(problems[0]).toMatch(/^--keepalive-idle: keepalive idle must be at least 1s/);
    expect(problems.join("\n")).toMatch(/--keepalive-count: keepalive count must be at least 1/);
    expect(problems.join("\n")).toMatch(/--user-timeout: "-1s" is not a duration/);
  });

  it("rejects YAML syntax errors with the line", () => {
    const file = writeConfig("listeners:\n  - name: a\n   listen: x\n");
    expect(problemsOf(() => loadConfig({ file, overrides: [] }))[0]).toMatch(/line \d+/);
  });

  it("keeps config/keepalive-proxy.schema.json in step with the schema (run `npm run schema`)", () => {
    const onDisk = readFileSync(new URL("../../config/keepalive-proxy.schema.json", import.meta.url), "utf8");
    expect(onDisk).toBe(configJsonSchemaText());
  });

  it("accepts the shipped config", () => {
    const config = loadConfig({ file: "config/keepalive-proxy.yaml", overrides: [] });
    expect(config.listeners.map((l) => l.name)).toEqual(["demo"]);
  });

  it("turns an alias with no anchor into a ConfigError naming the line", () => {
    const file = writeConfig("listeners:\n  - name: a\n    listen: 127.0.0.1:1\n    upstream: *nowhere\n");
    expect(problemsOf(() => loadConfig({ file, overrides: [] }))).toEqual([
      `${file} line 4 column 15: alias *nowhere has no anchor; define &nowhere on an earlier value, or write the value out`,
    ]);
  });

  it("still resolves aliases that have their anchor", () => {
    const file = writeConfig(
      "listeners:\n  - name: a\n    listen: 127.0.0.1:1\n    upstream: { address: db:1, keepalive: &ka { idle: 20s } }\n    client: { keepalive: *ka }\n",
    );
    expect(loadConfig({ file, overrides: [] }).listeners[0]?.client.keepalive.idle).toBe(20_000);
  });

  it("says what 0 means in the description of every duration field", () => {
    const durations = durationFields(configJsonSchema());
    expect(durations.map(([path]) => path)).toContain("listeners[].client.proxyProtocol.headerTimeout");
    for (const [path, description] of durations) expect(description, path).toMatch(/\b0\b/);
  });

  it("writes the effective config back in a form that reads as the same config", () => {
    const file = writeConfig(`
shutdown: { drainTimeout: 1500ms }
listeners:
  - name: a
    listen: "[::1]:0"
    upstream:
      addresses: [127.0.0.1:1, "[::1]:2"]
      retryBackoff: 250ms
      cooldown: 30000
      connectTimeout: 1.5s
      keepalive: { idle: 2h, userTimeout: 0 }
    client:
      proxyProtocol: { accept: v2, trustedSources: [10.0.0.0/8], headerTimeout: 0 }
    idleTimeout: 36h
    maxSessionDuration: ${MAX_TIMER_MS}ms
`);
    const original = loadConfig({ file, overrides: [] });
    const text = stringify(writtenConfig(original));
    expect(text).toContain("cooldown: 500m");
    const again = loadConfig({ file: undefined, document: parseConfigText(text, "printed"), overrides: [] });
    expect(again).toEqual(original);
    expect(again.listeners.map(listenerSettings)).toEqual(original.listeners.map(listenerSettings));
  });
});

/** [path, description] of every field the JSON Schema shows as a duration (text or a number of seconds). */
function durationFields(schema: unknown, path = ""): [string, string][] {
  if (typeof schema !== "object" || schema === null) return [];
  const node = schema as { type?: unknown; description?: string; properties?: Record<string, unknown>; items?: unknown; anyOf?: unknown[] };
  const found: [string, string][] = [];
  if (Array.isArray(node.type) && node.type.join() === "string,number") found.push([path, node.description ?? ""]);
  for (const [key, child] of Object.entries(node.properties ?? {})) found.push(...durationFields(child, path ? `${path}.${key}` : key));
  if (node.items) found.push(...durationFields(node.items, `${path}[]`));
  for (const option of node.anyOf ?? []) found.push(...durationFields(option, path));
  return found;
}
