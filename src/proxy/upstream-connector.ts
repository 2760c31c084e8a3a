import { lookup } from "node:dns/promises";
import { isIP, Socket } from "node:net";
import type { HostPort } from "../util/host-port.js";
import type { ConnectResult } from "./hooks.js";

/** A connected upstream socket, or why there is none. */
export type ConnectOutcome =
  | { readonly ok: true; readonly socket: Socket; readonly address: string; readonly durationMs: number }
  | {
      readonly ok: false;
      readonly result: Exclude<ConnectResult, "ok">;
      readonly errno: string | undefined;
      readonly address: string | undefined;
      readonly durationMs: number;
    };

/** A pending connect that the caller can abandon (the client went away). */
export interface PendingConnect {
  readonly done: Promise<ConnectOutcome>;
  cancel(): void;
}

/**
 * Opens one connection to an upstream. A host name is resolved on every call,
 * so a service that moves (DNS failover, a Kubernetes Service) is followed
 * without a restart. The timeout covers resolution and the TCP handshake.
 */
export function connectUpstream(target: HostPort, timeoutMs: number): PendingConnect {
  const started = performance.now();
  let socket: Socket | undefined;
  let settled = false;
  let timer: NodeJS.Timeout | undefined;
  let settle!: (outcome: ConnectOutcome) => void;
  const done = new Promise<ConnectOutcome>((resolve) => {
    settle = (outcome) => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      resolve(outcome);
    };
  });
  const elapsed = (): number => performance.now() - started;
  const fail = (result: Exclude<ConnectResult, "ok">, errno: string | undefined, address?: string): void => {
    socket?.destroy();
    settle({ ok: false, result, errno, address, durationMs: elapsed() });
  };

  timer = setTimeout(() => fail("timeout", "ETIMEDOUT", socket ? addressText(target.host, target.port) : undefined), timeoutMs);

  void resolveHost(target.host).then(
    (ip) => {
      if (settled) return;
      const address = addressText(ip, target.port);
      const s = new Socket({ allowHalfOpen: true });
      socket = s;
      s.once("error", (error: NodeJS.ErrnoException) => fail(classifyConnectError(error.code), error.code, address));
      s.once("connect", () => {
        s.removeAllListeners("error");
        settle({ ok: true, socket: s, address, durationMs: elapsed() });
      });
      s.connect({ host: ip, port: target.port });
    },
    (error: NodeJS.ErrnoException) => fail("dns_failure", error.code ?? "ENOTFOUND"),
  );

  return {
    done,
    cancel: () => fail("error", "ECANCELED"),
  };
}

async function resolveHost(host: string): Promise<string> {
  if (isIP(host) !== 0) return host;
  const { address } = await lookup(host);
  return address;
}

function addressText(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Maps a connect errno to its ConnectResult label. Pure. */
export function classifyConnectError(code: string | undefined): Exclude<ConnectResult, "ok"> {
  switch (code) {
    case "ECONNREFUSED":
      return "refused";
    case "EHOSTUNREACH":
    case "ENETUNREACH":
    case "EHOSTDOWN":
    case "ENETDOWN":
    case "EADDRNOTAVAIL":
      return "unreachable";
    case "ETIMEDOUT":
      return "timeout";
    case "ENOTFOUND":
    case "EAI_AGAIN":
    case "EAI_FAIL":
      return "dns_failure";
    default:
      return "error";
  }
}
