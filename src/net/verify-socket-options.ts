import { listenerSettings } from "../config/settings.js";
import type { Config } from "../config/schema.js";
import { StartupError, StartupErrorCode } from "../errors.js";
import type { SocketOptions } from "./socket-options.js";

/**
 * Checks every leg's options against the kernel on a throwaway socket, so a
 * refused option stops the proxy at startup with one clear message.
 */
export function verifySocketOptions(socketOptions: SocketOptions, config: Config): void {
  const problems: string[] = [];
  config.listeners.forEach((l, i) => {
    const settings = listenerSettings(l);
    const family = settings.upstream.targets[0]?.host.includes(":") ? 6 : 4;
    for (const [leg, options] of [["client", settings.client], ["upstream", settings.upstreamLeg]] as const) {
      for (const p of socketOptions.verify(options, family)) problems.push(`listeners[${i}].${leg}: ${p}`);
    }
  });
  if (problems.length > 0) {
    throw new StartupError(StartupErrorCode.SocketOptionsRefused, `the kernel refused socket options:\n${problems.join("\n")}`);
  }
}
