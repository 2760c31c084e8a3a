// A tiny HTTP GET for the admin and Prometheus tests: node:http rather than
// fetch, because it can also speak over a Unix socket (see ns-bridge.ts),
// and with no keep-alive, so a test leaves no idle connection behind.

import { request } from "node:http";

/** Where to send a request: a TCP port on 127.0.0.1, or a Unix socket path. */
export type HttpTarget = { readonly port: number; readonly host?: string } | { readonly socketPath: string };

/** A whole response. */
export interface HttpResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/** GETs `path` and resolves with the whole response; rejects on a connection error or after `timeoutMs`. */
export function httpGet(
  target: HttpTarget,
  path: string,
  { method = "GET", timeoutMs = 5_000, headers = {} }: { method?: string; timeoutMs?: number; headers?: Record<string, string> } = {},
): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const where = "socketPath" in target ? { socketPath: target.socketPath } : { host: target.host ?? "127.0.0.1", port: target.port };
    const req = request({ ...where, path, method, agent: false, timeout: timeoutMs, headers: { ...headers, connection: "close" } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (s: string) => {
        body += s;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${path}: no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

/** GETs `path` and parses the body as JSON, with the status. */
export async function httpGetJson<T>(target: HttpTarget, path: string): Promise<{ status: number; body: T }> {
  const res = await httpGet(target, path);
  return { status: res.status, body: JSON.parse(res.body) as T };
}
