import { ConfigError } from "../../src/config/errors.js";
import type { Override } from "../../src/config/load.js";

/** An override as the CLI makes one from `--name value`. */
export const flag = (name: string, value: unknown): Override => ({ flag: name, value, source: `--${name}` });

/** The lines of the ConfigError that `fn` throws; fails when it throws none. */
export function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error.message.split("\n");
    throw error;
  }
  throw new Error("expected a ConfigError");
}
