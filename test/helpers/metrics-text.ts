// Reads Prometheus' text exposition format, as /metrics serves it, into
// samples and metric families, so tests assert on the scrape itself.

/** One sample line: `name{labels} value`. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** One `# TYPE` family with its samples (a histogram's _bucket, _sum and _count included). */
export interface Family {
  readonly name: string;
  readonly type: string;
  readonly help: string;
  readonly samples: Sample[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses a whole scrape into families by name. */
export function parseMetrics(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (f === undefined) {
      f = { name, type: "untyped", help: "", samples: [] };
      families.set(name, f);
    }
    return f;
  };
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      const [, kind, name = "", rest = ""] = meta;
      const f = family(name);
      families.set(name, kind === "TYPE" ? { ...f, type: rest } : { ...f, help: rest });
      continue;
    }
    if (line.startsWith("#")) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const [, name = "", labelText = "", valueText = ""] = m;
    const labels: Record<string, string> = {};
    for (const l of labelText.matchAll(LABEL)) labels[l[1] ?? ""] = (l[2] ?? "").replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    family(familyOf(name, families)).samples.push({ name, labels, value: Number(valueText) });
  }
  return families;
}

/** The family a sample belongs to: `x_bucket` → `x` when `x` is a histogram, etc. */
function familyOf(sample: string, families: ReadonlyMap<string, Family>): string {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!sample.endsWith(suffix)) continue;
    const base = sample.slice(0, -suffix.length);
    const type = families.get(base)?.type;
    if (type === "histogram" || type === "summary") return base;
  }
  return sample;
}

/** Every sample of the scrape, flat. */
export function allSamples(families: ReadonlyMap<string, Family>): Sample[] {
  return [...families.values()].flatMap((f) => f.samples);
}

/** The value of the one sample named `name` whose labels include `labels`; throws when none or several match. */
export function sampleValue(families: ReadonlyMap<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const matches = allSamples(families).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (matches.length !== 1) {
    throw new Error(`expected one sample ${name}${JSON.stringify(labels)}, found ${matches.length}: ${JSON.stringify(matches.slice(0, 5))}`);
  }
  return (matches[0] as Sample).value;
}
