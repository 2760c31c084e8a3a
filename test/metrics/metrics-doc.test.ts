// A real scrape against METRICS.md, promtool's linter and the rule that no
// label ever holds an address: taken after sessions of every kind went through.

import { describe, expect, it } from "vitest";
import { ALL_CLOSE_REASONS } from "../../src/proxy/session/close-reason.js";
import { type AdminTestProxy, startAdminProxy } from "../helpers/admin-proxy.js";
import { waitUntil } from "../helpers/in-process-proxy.js";
import { readMetricsDoc } from "../helpers/metrics-doc.js";
import { allSamples, type Family, parseMetrics } from "../helpers/metrics-text.js";
import { connectClient, observe, startServer } from "../helpers/tcp.js";
import { runTool, toolSupport } from "../helpers/tools.js";

/** prom-client's gauges that promtool flags for their `_total` suffix: not ours to rename. */
const PROMTOOL_EXEMPT = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

interface Traffic {
  readonly proxy: AdminTestProxy;
  readonly text: string;
  readonly families: Map<string, Family>;
  /** Every address, port and id the sessions had: none may appear in a label. */
  readonly secrets: readonly string[];
}

/** A proxy that carried a clean session, a reset one and a refused connect, then scraped. */
async function scrapeAfterTraffic(): Promise<Traffic> {
  const upstream = await startServer();
  const p = await startAdminProxy({ upstream: `127.0.0.1:${upstream.port}` });
  const secrets = new Set<string>(["127.0.0.1", String(upstream.port), String(p.port), String(p.admin.port)]);

  const clean = await connectClient(p.port);
  secrets.add(String(clean.localPort));
  const cleanServer = await upstream.accepted();
  const atClean = observe(clean);
  clean.end("hello");
  cleanServer.end("bye");
  await waitUntil(() => atClean.closed, 5000, "the clean session to close");

  const reset = await connectClient(p.port);
  secrets.add(String(reset.localPort));
  await upstream.accepted();
  reset.resetAndDestroy();

  for (let i = 0; i < 2; i++) {
    const s = await p.nextClosed();
    secrets.add(s.sessionId).add(s.client);
    if (s.upstream !== undefined) secrets.add(s.upstream);
  }
  const text = await p.scrapeText();
  return { proxy: p, text, families: parseMetrics(text), secrets: [...secrets] };
}

describe("the scrape and METRICS.md", () => {
  it("documents every metric of a real scrape with its type, and every documented metric is in it", async () => {
    const { families } = await scrapeAfterTraffic();
    const doc = readMetricsDoc();
    const scraped = [...families.values()].map((f) => `${f.name} ${f.type}`).sort();
    const documented = [...doc.metrics.values()].map((m) => `${m.name} ${m.type}`).sort();
    expect(scraped).toEqual(documented);
  });

  it("documents the label names of every metric", async () => {
    const { families } = await scrapeAfterTraffic();
    const doc = readMetricsDoc();
    for (const family of families.values()) {
      // A family with no sample (no GC yet, no libuv request) shows no labels to compare.
      if (family.samples.length === 0) continue;
      const names = new Set(family.samples.flatMap((s) => Object.keys(s.labels)).filter((l) => l !== "le" && l !== "quantile"));
      expect({ metric: family.name, labels: [...names].sort() }).toEqual({
        metric: family.name,
        labels: [...(doc.metrics.get(family.name)?.labels ?? [])].sort(),
      });
    }
  });

  it("shows exactly the documented values of every closed label set, all of them from the start", async () => {
    const { families } = await scrapeAfterTraffic();
    const doc = readMetricsDoc();
    expect(doc.labelValues.get("reason")).toEqual([[...ALL_CLOSE_REASONS]]);
    for (const family of families.values()) {
      if (!family.name.startsWith("keepalive_proxy_")) continue;
      for (const [label, sets] of doc.labelValues) {
        const values = [...new Set(family.samples.map((s) => s.labels[label]).filter((v) => v !== undefined))].sort();
        if (values.length === 0) continue;
        const matching = sets.find((set) => JSON.stringify([...set].sort()) === JSON.stringify(values));
        expect(matching, `${family.name} ${label}=${values.join(",")} is not a documented set: ${JSON.stringify(sets)}`).toBeDefined();
      }
    }
  });

  it("puts no address, port or session id in any label value", async () => {
    const { families, secrets } = await scrapeAfterTraffic();
    const offending: string[] = [];
    for (const sample of allSamples(families)) {
      for (const [label, value] of Object.entries(sample.labels)) {
        if (label === "le" || label === "quantile") continue; // bucket bounds: numbers by definition
        const looksLikeAddress =
          /\b\d{1,3}(\.\d{1,3}){3}\b/.test(value) || // IPv4
          /[0-9a-f]{0,4}:[0-9a-f]{0,4}:/i.test(value) || // IPv6
          /:\d{1,5}$/.test(value) || // host:port
          secrets.some((secret) => value.includes(secret));
        if (looksLikeAddress) offending.push(`${sample.name}{${label}="${value}"}`);
      }
    }
    expect(secrets.length).toBeGreaterThan(6);
    expect(offending).toEqual([]);
  });
});

const promtool = toolSupport("promtool");

describe.skipIf(!promtool.ok)("promtool", () => {
  it("passes `promtool check metrics` on the scrape, but for prom-client's three nodejs_active_*_total gauges", async () => {
    const { text } = await scrapeAfterTraffic();
    const linted = text
      .split("\n")
      .filter((line) => !PROMTOOL_EXEMPT.some((name) => new RegExp(`^(# (HELP|TYPE) )?${name}\\b`).test(line)))
      .join("\n");
    expect(linted).toContain("keepalive_proxy_sessions_closed_total");
    const result = await runTool(["promtool", "check", "metrics"], { input: linted });
    expect({ code: result.code, out: result.stdout + result.stderr }).toEqual({ code: 0, out: "" });
    // The exemption is needed, and only for those three.
    const unfiltered = await runTool(["promtool", "check", "metrics"], { input: text });
    const flagged = unfiltered.stdout.concat(unfiltered.stderr).trim().split("\n").map((l) => l.split(" ")[0]).sort();
    expect(flagged).toEqual(PROMTOOL_EXEMPT);
  });
});
