// Regenerates config/keepalive-proxy.schema.json from the zod schema (run after `npm run build`).
import { writeFileSync } from "node:fs";
import { configJsonSchemaText } from "../dist/config/json-schema.js";

const target = new URL("../config/keepalive-proxy.schema.json", import.meta.url);
writeFileSync(target, configJsonSchemaText());
console.log(`wrote ${target.pathname}`);
