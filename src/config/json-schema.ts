import { z } from "zod";
import { configSchema } from "./schema.js";

/**
 * The config file's JSON Schema, generated from the zod schema (its input
 * side: durations as text, defaults shown). Written to
 * config/keepalive-proxy.schema.json by `npm run schema`; a test fails when
 * that file is stale.
 */
export function configJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
  return {
    ...schema,
    $id: "https://keepalive-proxy.dev/schema/config.json",
    title: "keepalive-proxy configuration",
  };
}

/** The schema as the file holds it: two-space JSON and a final newline. */
export function configJsonSchemaText(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}
