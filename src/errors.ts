/** Stable codes for failures that stop the proxy from starting; the CLI maps them to exit codes. */
export const StartupErrorCode = {
  ListenFailed: "LISTEN_FAILED",
  SocketOptionsRefused: "SOCKET_OPTIONS_REFUSED",
  Platform: "UNSUPPORTED_PLATFORM",
  AdminTokenUnreadable: "ADMIN_TOKEN_UNREADABLE",
} as const;
export type StartupErrorCode = (typeof StartupErrorCode)[keyof typeof StartupErrorCode];

/** A failure at startup, with a message an operator can act on. */
export class StartupError extends Error {
  constructor(
    readonly code: StartupErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "StartupError";
  }
}

/** Binding a listen address failed: in use, permission, or no such address. */
export class ListenError extends StartupError {
  constructor(listener: string, address: string, cause: NodeJS.ErrnoException) {
    super(StartupErrorCode.ListenFailed, `listener "${listener}" cannot listen on ${address}: ${explainListenError(cause, address)}`, {
      cause,
    });
    this.name = "ListenError";
  }
}

function explainListenError(error: NodeJS.ErrnoException, address: string): string {
  switch (error.code) {
    case "EADDRINUSE":
      return "the address is already in use (EADDRINUSE); stop the other process or choose another port";
    case "EACCES":
      return "permission denied (EACCES); ports below 1024 need root or CAP_NET_BIND_SERVICE, or use a port of 1024 or more";
    case "EADDRNOTAVAIL":
      return `no interface has this address (EADDRNOTAVAIL); use an address of this host or 0.0.0.0 / [::]`;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `the host name does not resolve (${error.code}); use an IP address or a name this host resolves`;
    default:
      return `${error.code ?? "error"}: ${error.message} (${address})`;
  }
}
