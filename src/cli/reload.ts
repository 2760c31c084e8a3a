import type { Config } from "../config/schema.js";
import type { KeepaliveProxy } from "../lifecycle/keepalive-proxy.js";

/**
 * SIGHUP: re-read the config through `load` and apply it. The one function the
 * SIGHUP path goes through: the proxy's serialised reload, which queues a
 * reload behind one in flight, refuses (and counts) one during a drain, and
 * never rejects: an invalid config, a loader that throws anything else, or a
 * reload that fails, each leaves the running config in force with one error
 * line, counted as a failed reload.
 */
export function reloadConfig(proxy: Pick<KeepaliveProxy, "requestReload">, load: () => Config): Promise<void> {
  return proxy.requestReload(load);
}

/** An error's message, or whatever was thrown as text, for a log field. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
