// The alerting rules and the Grafana dashboard in deploy/: valid for
// promtool, unit-tested, and built only on metrics METRICS.md documents.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it, onTestFinished } from "vitest";
import { stringify } from "yaml";
import { readMetricsDoc } from "../helpers/metrics-doc.js";
import { runTool, toolSupport } from "../helpers/tools.js";

const DEPLOY = fileURLToPath(new URL("../../deploy/", import.meta.url));
const ALERTS = join(DEPLOY, "prometheus/alerts.yaml");
const ALERTS_TEST = join(DEPLOY, "prometheus/alerts.test.yaml");
const DASHBOARD = join(DEPLOY, "grafana/keepalive-proxy-dashboard.json");

interface Target {
  readonly expr: string;
}
interface Panel {
  readonly title?: string;
  readonly targets?: readonly Target[];
  readonly panels?: readonly Panel[];
}
interface Dashboard {
  readonly panels: readonly Panel[];
  readonly templating: { readonly list: readonly { readonly name: string; readonly query?: unknown; readonly definition?: string }[] };
}

function dashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD, "utf8")) as Dashboard;
}

/** Every PromQL expression of the dashboard: panel targets and variable queries. */
function dashboardExprs(d: Dashboard): string[] {
  const walk = (panels: readonly Panel[]): string[] => panels.flatMap((p) => [...(p.targets ?? []).map((t) => t.expr), ...walk(p.panels ?? [])]);
  return walk(d.panels);
}

/** The metric names an expression reads, histogram suffixes folded into their family. */
function metricsIn(expr: string, histograms: ReadonlySet<string>): string[] {
  return [...expr.matchAll(/\b(keepalive_proxy_[a-z_]+|process_[a-z_]+|nodejs_[a-z0-9_]+)\b/g)].map((m) => {
    const name = m[1] ?? "";
    const base = name.replace(/_(bucket|sum|count)$/, "");
    return histograms.has(base) ? base : name;
  });
}

/** Grafana's variables replaced by values Prometheus parses. */
function withoutGrafanaVariables(expr: string): string {
  return expr.replaceAll("$__rate_interval", "5m").replace(/\$(job|instance|listener)\b/g, ".*");
}

const promtool = toolSupport("promtool");

describe("deploy/", () => {
  it("builds alerts and dashboard panels only on documented metrics", () => {
    const doc = readMetricsDoc();
    const histograms = new Set([...doc.metrics.values()].filter((m) => m.type === "histogram").map((m) => m.name));
    const alertExprs = [...readFileSync(ALERTS, "utf8").matchAll(/expr: (\|\n(?:\s{10}.*\n)+|.*)/g)].map((m) => m[1] ?? "");
    const d = dashboard();
    const variableQueries = d.templating.list.flatMap((v) => (v.definition ? [v.definition] : []));
    const used = new Set([...alertExprs, ...dashboardExprs(d), ...variableQueries].flatMap((e) => metricsIn(e, histograms)));
    const undocumented = [...used].filter((name) => !doc.metrics.has(name));
    expect(undocumented).toEqual([]);
    // The alerts cover what the issue asks for.
    for (const needed of ["up{", "keepalive_proxy_upstream_connect_attempts_total", "keepalive_proxy_listener_up", "client_timeout|upstream_timeout"]) {
      expect(alertExprs.join("\n")).toContain(needed);
    }
    expect(dashboardExprs(d).length).toBeGreaterThan(15);
  });

  it.skipIf(!promtool.ok)("has alerting rules that pass `promtool check rules` and their unit tests", async () => {
    const check = await runTool(["promtool", "check", "rules", ALERTS]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    const unit = await runTool(["promtool", "test", "rules", "alerts.test.yaml"], { cwd: join(DEPLOY, "prometheus") });
    expect(unit.code, unit.stdout + unit.stderr).toBe(0);
    expect(unit.stdout).toContain("SUCCESS");
    expect(readFileSync(ALERTS_TEST, "utf8")).toContain("KeepaliveProxyDeadPeersRising");
  });

  it.skipIf(!promtool.ok)("has a dashboard whose every query is valid PromQL", async () => {
    // promtool parses PromQL only inside rule files: each query becomes a recording rule.
    const exprs = dashboardExprs(dashboard()).map(withoutGrafanaVariables);
    const dir = mkdtempSync(join(tmpdir(), "kp-dashboard-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, "dashboard-queries.yaml");
    writeFileSync(file, stringify({ groups: [{ name: "dashboard", rules: exprs.map((expr, i) => ({ record: `dashboard:query_${i}`, expr })) }] }));
    const check = await runTool(["promtool", "check", "rules", file]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toContain(`SUCCESS: ${exprs.length} rules found`);
  });
});
