import type { Options } from "yargs";

/** The flags of `keepalive-proxy discover`, beside --upstream and --config, which every command shares. */
export function discoverFlags(): Record<string, Options> {
  return {
    max: { type: "string", desc: "Longest idle time to try; the default ladder spans max/60 to max (default 30m)" },
    ladder: { type: "string", desc: "Idle times to try instead, e.g. 30s,1m,5m (whole seconds, at most 64 rungs)" },
    json: { type: "boolean", desc: "Print the report as one JSON document" },
    listener: { type: "string", desc: "Measure this listener's upstream addresses from --config instead of --upstream" },
  };
}
