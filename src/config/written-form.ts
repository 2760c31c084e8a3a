import type { z } from "zod";
import { formatDuration } from "../util/duration.js";
import { formatHostPort, type HostPort } from "../util/host-port.js";
import { configSchema, writtenForms } from "./schema.js";

/**
 * A parsed config (or any part of the same shape) written back the way the
 * file reads: durations as `90s`/`250ms` text, addresses as HOST:PORT. Which
 * fields those are comes from the schema itself (the `writtenForms`
 * registry), not from a list of key names, so a duration field added later
 * cannot be printed as bare milliseconds that would read back as seconds.
 */
export function writtenConfig(config: unknown): unknown {
  return written(configSchema, config);
}

// Wrappers whose inner schema describes the same value.
const WRAPPERS = new Set(["default", "prefault", "optional", "nullable", "readonly", "nonoptional", "catch"]);

interface Def {
  readonly type: string;
  readonly innerType?: z.ZodType;
  readonly shape?: Record<string, z.ZodType>;
  readonly element?: z.ZodType;
}

function written(schema: z.ZodType, value: unknown): unknown {
  if (value === undefined || value === null) return value;
  const form = writtenForms.get(schema)?.form;
  if (form === "duration" && typeof value === "number") return formatDuration(value);
  if (form === "address" && typeof value === "object") return formatHostPort(value as HostPort);
  const def = (schema as unknown as { _zod: { def: Def } })._zod.def;
  if (WRAPPERS.has(def.type) && def.innerType) return written(def.innerType, value);
  if (def.type === "array" && def.element && Array.isArray(value)) return value.map((item: unknown) => written(def.element as z.ZodType, item));
  if (def.type === "object" && def.shape && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      if (item === undefined) continue;
      const field = def.shape[key];
      out[key] = field ? written(field, item) : item;
    }
    return out;
  }
  return value;
}
