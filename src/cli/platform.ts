import { StartupError, StartupErrorCode } from "../errors.js";

/**
 * Refuses to go on anywhere but Linux, before anything loads libc: the socket
 * options (TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT) are Linux's, and on
 * another system loading libc fails first with an error that says nothing
 * useful (exit 70, "internal error").
 */
export function requireLinux(platform: NodeJS.Platform): void {
  if (platform !== "linux") {
    throw new StartupError(
      StartupErrorCode.Platform,
      `Linux is needed (TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT are Linux socket options); this is ${platform}`,
    );
  }
}
