import { readFileSync } from "node:fs";

/** What the build_info metric reports. */
export interface BuildInfo {
  readonly version: string;
  readonly nodeVersion: string;
}

/**
 * The package version, read from package.json next to `src/` or `dist/` (both
 * are one level below the package root), and the Node version running it.
 * "unknown" when package.json is not there, e.g. in a bundle.
 */
export function readBuildInfo(): BuildInfo {
  let version = "unknown";
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: unknown };
    if (typeof pkg.version === "string") version = pkg.version;
  } catch {
    // Not fatal: build_info then says "unknown" rather than stopping the proxy.
  }
  return { version, nodeVersion: process.version };
}
