import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { Deployment } from "kubernetes-models/apps/v1";
import { ConfigMap, Service } from "kubernetes-models/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";

/**
 * Offline validation of Kubernetes manifests against the API's schemas, strict
 * about field names the way `kubectl apply --validate=strict` is.
 *
 * kubernetes-models ships the Kubernetes OpenAPI schemas (and the Prometheus
 * Operator's CRD schemas) compiled into ajv validators. They check types,
 * enums and required fields, but the schemas do not forbid additional
 * properties, so a misspelled optional field (`readinessProbee`) passes, and
 * the cluster would silently drop it.
 *
 * To catch those, the manifest is validated through a Proxy that records which
 * property names the compiled validator looks up on each object. An ajv
 * validator reads every property its schema declares (`data.readinessProbe`),
 * present or not, and enumerates the keys of a map (labels, ConfigMap data).
 * So on an object that was not enumerated, a key the validator never asked for
 * is a field the schema does not have. The field lists thus come from the same
 * schemas that check the types: one source, no hand-kept lists.
 */

interface ValidatingModel {
  readonly apiVersion: string;
  readonly kind: string;
  readonly prototype: { validate(): void };
}

/** The kinds deploy/kubernetes may use; add the model here to allow another. */
const MODELS: readonly ValidatingModel[] = [ConfigMap, Service, Deployment, PodDisruptionBudget, ServiceMonitor];

/** One problem with a manifest: where (`spec.template.spec.containers[0].image`) and what. */
export interface SchemaProblem {
  readonly path: string;
  readonly message: string;
}

// Paths are JSON pointers while validating, as ajv reports them (label keys
// hold dots and slashes); they become dotted paths only in problems.
interface Observed {
  /** Property names the validator asked for, per object's JSON pointer. */
  readonly asked: Map<string, Set<string>>;
  /** Objects whose keys the validator enumerated: maps, open to any key. */
  readonly enumerated: Set<string>;
}

/** Validates one parsed manifest; returns every problem (empty when valid). */
export function validateManifest(manifest: unknown): SchemaProblem[] {
  if (!isRecord(manifest)) return [{ path: "", message: "a manifest must be a mapping" }];
  const model = MODELS.find((m) => m.apiVersion === manifest.apiVersion && m.kind === manifest.kind);
  if (!model) {
    const known = MODELS.map((m) => `${m.apiVersion} ${m.kind}`).join(", ");
    return [{ path: "", message: `unsupported apiVersion/kind ${String(manifest.apiVersion)} ${String(manifest.kind)}; known: ${known}` }];
  }
  const observed: Observed = { asked: new Map(), enumerated: new Set() };
  const problems: SchemaProblem[] = [];
  try {
    model.prototype.validate.call(instrument(manifest, "", observed));
  } catch (error) {
    problems.push(...schemaErrors(error));
  }
  problems.push(...unknownFields(manifest, "", observed));
  return problems;
}

/** Wraps objects and arrays, recursively and lazily, recording what is asked of them. */
function instrument(value: unknown, pointer: string, observed: Observed): unknown {
  if (typeof value !== "object" || value === null) return value;
  const isArray = Array.isArray(value);
  return new Proxy(value, {
    get(target, key, receiver) {
      const child: unknown = Reflect.get(target, key, receiver);
      if (typeof key !== "string" || (isArray && !/^\d+$/.test(key))) return child;
      if (!isArray) ask(observed, pointer, key);
      return instrument(child, pointerTo(pointer, key), observed);
    },
    has(target, key) {
      if (typeof key === "string" && !isArray) ask(observed, pointer, key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      observed.enumerated.add(pointer);
      return Reflect.ownKeys(target);
    },
  });
}

function ask(observed: Observed, pointer: string, key: string): void {
  const keys = observed.asked.get(pointer) ?? new Set<string>();
  observed.asked.set(pointer, keys);
  keys.add(key);
}

/** Keys of objects the validator inspected field by field but never asked for. */
function unknownFields(value: unknown, pointer: string, observed: Observed): SchemaProblem[] {
  if (Array.isArray(value)) return value.flatMap((item, i) => unknownFields(item, pointerTo(pointer, String(i)), observed));
  if (!isRecord(value)) return [];
  const problems: SchemaProblem[] = [];
  const asked = observed.asked.get(pointer);
  // Not asked about anything: a free-form object (x-kubernetes-preserve-unknown-fields),
  // or one the validator did not reach because its parent already failed.
  const closed = asked !== undefined && !observed.enumerated.has(pointer);
  for (const [key, child] of Object.entries(value)) {
    if (closed && !asked.has(key)) {
      const hint = closestName(key, asked);
      const message = `unknown field${hint ? `; did you mean "${hint}"?` : ""} (known here: ${[...asked].sort().join(", ")})`;
      problems.push({ path: dotted(pointerTo(pointer, key)), message });
    } else {
      problems.push(...unknownFields(child, pointerTo(pointer, key), observed));
    }
  }
  return problems;
}

/** ajv's errors, as kubernetes-models throws them, as problems. */
function schemaErrors(error: unknown): SchemaProblem[] {
  const errors = (error as { errors?: readonly { instancePath: string; message?: string }[] }).errors;
  if (!errors) throw error;
  return errors.map((e) => ({ path: dotted(e.instancePath), message: e.message ?? "is invalid" }));
}

/** The known name within edit distance 2 of a misspelled one, if any. */
function closestName(name: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const d = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

function pointerTo(pointer: string, key: string): string {
  return `${pointer}/${key.replace(/~/g, "~0").replace(/\//g, "~1")}`;
}

/** `/spec/containers/0/name` as `spec.containers[0].name`. */
function dotted(pointer: string): string {
  return pointer
    .split("/")
    .slice(1)
    .map((part) => (/^\d+$/.test(part) ? `[${part}]` : `.${part.replace(/~1/g, "/").replace(/~0/g, "~")}`))
    .join("")
    .replace(/^\./, "");
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
