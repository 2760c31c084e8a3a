// An in-process proxy (test/helpers/in-process-proxy.ts) with its admin
// server on 127.0.0.1:0, and reads of its endpoints.

import { type Family, parseMetrics } from "./metrics-text.js";
import { type HttpResponse, type HttpTarget, httpGet } from "./http.js";
import { startTestProxy, type TestProxy } from "./in-process-proxy.js";

/** A TestProxy whose admin server is up. */
export interface AdminTestProxy extends TestProxy {
  readonly admin: HttpTarget & { readonly port: number };
  /** GET on the admin server. */
  get(path: string): Promise<HttpResponse>;
  /** GET /metrics, parsed. */
  scrape(): Promise<Map<string, Family>>;
  /** GET /metrics as text. */
  scrapeText(): Promise<string>;
}

/** Starts an in-process proxy with the admin server on 127.0.0.1:0; stopped when the test finishes. */
export async function startAdminProxy(flags: Record<string, string | boolean>): Promise<AdminTestProxy> {
  const t = await startTestProxy({ admin: "127.0.0.1:0", ...flags });
  const port = t.proxy.admin?.address()?.port;
  if (port === undefined) throw new Error("the admin server did not start");
  const admin = { port };
  const scrapeText = async (): Promise<string> => {
    const res = await httpGet(admin, "/metrics");
    if (res.status !== 200) throw new Error(`/metrics answered ${res.status}: ${res.body}`);
    return res.body;
  };
  return {
    ...t,
    admin,
    get: (path) => httpGet(admin, path),
    scrapeText,
    scrape: async () => parseMetrics(await scrapeText()),
  };
}
