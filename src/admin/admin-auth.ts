// Access control for the admin server: one bearer token, read from a file at
// startup (a Kubernetes Secret mounted as a file, a systemd credential), so
// it never appears in argv, the environment or the printed config.

import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import type { Config } from "../config/schema.js";
import { StartupError, StartupErrorCode } from "../errors.js";

/** The paths a token opens; /healthz and /readyz stay open for probes, and the page's own script and style carry no data. */
export const PROTECTED_PATHS: ReadonlySet<string> = new Set(["/", "/status.json", "/connections", "/metrics"]);

/** The token file is missing, unreadable or empty. */
export class AdminTokenError extends StartupError {
  constructor(file: string, why: string, cause?: unknown) {
    super(
      StartupErrorCode.AdminTokenUnreadable,
      `the admin token file ${file} ${why}; write one line of at least 16 characters to it (e.g. openssl rand -hex 32)`,
      {
        cause,
      },
    );
    this.name = "AdminTokenError";
  }
}

/** Shorter tokens are refused: a guess per request at the admin server's rate must not find one. */
export const MIN_TOKEN_LENGTH = 16;

/**
 * Checks `Authorization: Bearer <token>`. Both sides are hashed with SHA-256
 * before timingSafeEqual, so the comparison takes the same time whatever the
 * sent value's length or content (timingSafeEqual itself needs equal lengths,
 * and an early length check would tell a guesser the token's length).
 */
export class AdminAuth {
  private readonly digest: Buffer;

  constructor(
    token: string,
    /** admin.auth.metricsOpen: /metrics needs no token. */
    readonly metricsOpen: boolean,
  ) {
    this.digest = sha256(token);
  }

  /** Reads the token from `file` (surrounding whitespace dropped). Throws an AdminTokenError. */
  static fromFile(file: string, metricsOpen: boolean): AdminAuth {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (error) {
      throw new AdminTokenError(file, `cannot be read (${(error as NodeJS.ErrnoException).code ?? "error"})`, error);
    }
    const token = text.trim();
    if (token.length < MIN_TOKEN_LENGTH)
      throw new AdminTokenError(file, token.length === 0 ? "is empty" : `holds a token shorter than ${MIN_TOKEN_LENGTH} characters`);
    if (/\s/.test(token)) throw new AdminTokenError(file, "holds whitespace inside the token");
    return new AdminAuth(token, metricsOpen);
  }

  /** Whether a request for `path` needs the token. */
  protects(path: string): boolean {
    if (path === "/metrics" && this.metricsOpen) return false;
    return PROTECTED_PATHS.has(path);
  }

  /** Whether the Authorization header carries the token. Never throws. */
  permits(authorization: string | undefined): boolean {
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? "");
    const sent = sha256(match?.[1] ?? "");
    // Compared even without a match, so a missing header takes as long as a wrong one.
    return timingSafeEqual(sent, this.digest) && match !== null;
  }
}

/** The admin server's token check, when admin.auth.tokenFile is set. Throws an AdminTokenError. */
export function adminAuth(config: Config): AdminAuth | undefined {
  const { tokenFile, metricsOpen } = config.admin.auth;
  return tokenFile === null ? undefined : AdminAuth.fromFile(tokenFile, metricsOpen);
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/** Whether a listen host reaches only this machine: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  const lower = host.toLowerCase();
  return lower === "::1" || lower === "0:0:0:0:0:0:0:1" || lower.startsWith("::ffff:127.");
}
