import type { Socket } from "node:net";
import type { CancelSignal } from "../../util/cancel-signal.js";
import { settleOnce } from "../../util/settle-once.js";
import { parseProxyHeader, type ProxyHeader, type ProxyProtocolVersion } from "./proxy-protocol.js";

export type HeaderReadResult =
  | { readonly ok: true; readonly header: ProxyHeader }
  | { readonly ok: false; readonly cause: "invalid" | "timeout" | "cancelled"; readonly why: string };

/**
 * Reads a PROXY protocol header from a paused client socket, within a
 * timeout (0 = no timeout). Bytes after the header are pushed back onto the
 * socket, which is left paused, so the session forwards them as if nothing had
 * been read. An aborted `signal` (the client reset, the proxy stopping) ends
 * the wait at once as `cancelled`.
 */
export function readProxyHeader(socket: Socket, accept: ProxyProtocolVersion | "any", timeoutMs: number, signal: CancelSignal): Promise<HeaderReadResult> {
  if (signal.aborted) return Promise.resolve({ ok: false, cause: "cancelled", why: "the session ended first" });
  return new Promise((resolve) => {
    let buffered: Buffer = Buffer.alloc(0);
    const finish = settleOnce<HeaderReadResult>(
      {
        timeoutMs,
        signal,
        onTimeout: () => ({ ok: false, cause: "timeout", why: `no PROXY header within ${timeoutMs}ms` }),
        onAbort: () => ({ ok: false, cause: "cancelled", why: "the session ended first" }),
      },
      (result) => {
        socket.off("data", onData);
        socket.off("end", onEnd);
        socket.off("close", onEnd);
        socket.pause();
        resolve(result);
      },
    );
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const parsed = parseProxyHeader(buffered, accept);
      if (parsed.status === "incomplete") return;
      if (parsed.status === "invalid") {
        finish({ ok: false, cause: "invalid", why: parsed.why });
        return;
      }
      const rest = buffered.subarray(parsed.length);
      finish({ ok: true, header: parsed.header });
      if (rest.length > 0) socket.unshift(rest);
    };
    const onEnd = (): void => finish({ ok: false, cause: "invalid", why: "the connection ended before a complete PROXY header" });
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.once("close", onEnd);
    socket.resume();
  });
}
