// Reads the tables of METRICS.md: one row per metric (name, type, labels,
// meaning) and one row per label with its closed set of values.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const METRICS_MD = fileURLToPath(new URL("../../METRICS.md", import.meta.url));

/** One metric row. */
export interface DocumentedMetric {
  readonly name: string;
  readonly type: string;
  readonly labels: readonly string[];
}

/** What METRICS.md documents. */
export interface MetricsDoc {
  readonly metrics: ReadonlyMap<string, DocumentedMetric>;
  /** Label name → its documented value sets (a label such as `result` can have one set per metric). */
  readonly labelValues: ReadonlyMap<string, readonly (readonly string[])[]>;
}

const TYPES = new Set(["counter", "gauge", "histogram", "summary"]);

/** Backticked words of a table cell. */
function codes(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? "");
}

/** Parses METRICS.md (or `text`). Throws on a metric listed twice. */
export function readMetricsDoc(text = readFileSync(METRICS_MD, "utf8")): MetricsDoc {
  const metrics = new Map<string, DocumentedMetric>();
  const labelValues = new Map<string, string[][]>();
  for (const line of text.split("\n")) {
    if (!line.startsWith("| `")) continue;
    const cells = line.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim());
    const [first = "", second = "", third = ""] = cells;
    const name = codes(first)[0] ?? "";
    if (cells.length === 4 && TYPES.has(second)) {
      if (metrics.has(name)) throw new Error(`METRICS.md lists ${name} twice`);
      metrics.set(name, { name, type: second, labels: codes(third) });
    } else if (cells.length === 2) {
      const values = codes(second);
      // Rows whose values are free text (listener names, versions) document no closed set.
      if (/^[a-z_]+(, [a-z_]+)*$/.test(values.join(", ")) && values.length === second.split(",").length) {
        labelValues.set(name, [...(labelValues.get(name) ?? []), values]);
      }
    }
  }
  return { metrics, labelValues };
}
