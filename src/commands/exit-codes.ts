/** Process exit codes, documented in the README and in `--help`. */
export const ExitCode = {
  /** Ran and stopped cleanly, or the check passed. */
  Ok: 0,
  /** Could not start: a listen address could not be bound, the kernel refused a socket option, not Linux. */
  StartupFailed: 1,
  /** The config or the command line is invalid. */
  InvalidConfig: 2,
  /** `check --connect`: an upstream was not reachable. */
  UpstreamUnreachable: 3,
  /** A bug in keepalive-proxy: please report it. */
  InternalError: 70,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];
