// Admin access control: a token from a file, sent as a Bearer token; the
// probes stay open; /metrics can be left open for scrapers without a token;
// a real Prometheus scrapes with the token from a file.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { describe, expect, it, onTestFinished, test } from "vitest";
import { AdminAuth, AdminTokenError } from "../../src/admin/admin-auth.js";
import { loadConfig } from "../../src/config/load.js";
import { startProxy } from "../../src/main.js";
import { startAdminProxy } from "../helpers/admin-proxy.js";
import { httpGet } from "../helpers/http.js";
import { Lab, netnsSupport } from "../helpers/netns.js";
import { PrometheusProcess } from "../helpers/prometheus.js";
import { ProxyProcess } from "../helpers/proxy-process.js";
import { startServer } from "../helpers/tcp.js";
import { toolSupport } from "../helpers/tools.js";

const TOKEN = "s3cret-token-0123456789abcdef";
const PROTECTED = ["/", "/status.json", "/connections", "/metrics"];

/** A token file in a fresh directory, removed when the test finishes. */
function tokenFile(content = `${TOKEN}\n`): string {
  const dir = mkdtempSync(join(tmpdir(), "kp-token-"));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "token");
  writeFileSync(file, content, { mode: 0o600 });
  return file;
}

async function proxyWithToken(flags: Record<string, string | boolean> = {}) {
  const upstream = await startServer();
  return startAdminProxy({ upstream: `127.0.0.1:${upstream.port}`, "admin-token-file": tokenFile(), ...flags });
}

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

describe("admin access control", () => {
  it("answers 401 with a Bearer challenge on /, /status.json, /connections and /metrics without the token, and 200 with it", async () => {
    const p = await proxyWithToken();
    for (const path of PROTECTED) {
      const refused = await httpGet(p.admin, path);
      expect([path, refused.status]).toEqual([path, 401]);
      expect(refused.headers["www-authenticate"]).toBe('Bearer realm="keepalive-proxy"');
      expect(refused.body).not.toMatch(/127\.0\.0\.1/);
      const allowed = await httpGet(p.admin, path, bearer(TOKEN));
      expect([path, allowed.status]).toEqual([path, 200]);
    }
    expect(p.logs.find((l) => l.msg === "admin listening")).toMatchObject({ auth: "token" });
  });

  it("leaves /healthz and /readyz open for probes, and the page's script and style, which carry no data", async () => {
    const p = await proxyWithToken();
    for (const path of ["/healthz", "/readyz", "/status.js", "/status.css"]) expect([path, (await httpGet(p.admin, path)).status]).toEqual([path, 200]);
  });

  it("refuses a wrong token of the same length, another scheme, and a token with extra characters", async () => {
    const p = await proxyWithToken();
    const wrong = `${TOKEN.slice(0, -1)}${TOKEN.endsWith("f") ? "e" : "f"}`;
    expect(wrong).toHaveLength(TOKEN.length);
    for (const header of [`Bearer ${wrong}`, `Basic ${Buffer.from(`x:${TOKEN}`).toString("base64")}`, `Bearer ${TOKEN}x`, TOKEN, "Bearer"]) {
      const res = await httpGet(p.admin, "/metrics", { headers: { authorization: header } });
      expect([header, res.status]).toEqual([header, 401]);
    }
    expect((await httpGet(p.admin, "/metrics", { headers: { authorization: `bearer  ${TOKEN}` } })).status).toBe(200);
  });

  it("answers the page's 401 with the token form, under the same strict headers", async () => {
    const p = await proxyWithToken();
    const res = await httpGet(p.admin, "/");
    expect(res.status).toBe(401);
    expect(res.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(res.headers["content-security-policy"]).toMatch(/^default-src 'self'/);
    expect(res.headers["x-content-type-options"]).toBe("nosniff");
    expect(res.body).toMatch(/<form id="login">/);
    expect(res.body).not.toMatch(/data-session-id|data-closed-id/);
  });

  it("leaves /metrics open with admin.auth.metricsOpen while the rest still needs the token", async () => {
    const upstream = await startServer();
    const p = await startAdminProxyWithDocument(tokenFile(), upstream.port);
    expect((await httpGet(p, "/metrics")).status).toBe(200);
    for (const path of ["/", "/status.json", "/connections"]) expect([path, (await httpGet(p, path)).status]).toEqual([path, 401]);
  });

  it("warns at startup when the admin server listens beyond loopback without a token, and not with one", async () => {
    const upstream = await startServer();
    const open = await startAdminProxy({ upstream: `127.0.0.1:${upstream.port}`, admin: "0.0.0.0:0" });
    expect(open.logs.find((l) => l.level === "warn" && /beyond loopback without a token/.test(l.msg))).toMatchObject({ address: "0.0.0.0" });
    const local = await startAdminProxy({ upstream: `127.0.0.1:${upstream.port}` });
    expect(local.logs.filter((l) => /beyond loopback/.test(l.msg))).toEqual([]);
    const guarded = await startAdminProxy({ upstream: `127.0.0.1:${upstream.port}`, admin: "0.0.0.0:0", "admin-token-file": tokenFile() });
    expect(guarded.logs.filter((l) => /beyond loopback/.test(l.msg))).toEqual([]);
  });

  it("refuses to start with a missing, empty or short token file, naming the file", async () => {
    const missing = join(tmpdir(), "kp-no-such-token-file");
    for (const [file, why] of [
      [missing, /cannot be read \(ENOENT\)/],
      [tokenFile("\n"), /is empty/],
      [tokenFile("short"), /shorter than 16/],
    ] as const) {
      const config = loadConfig({
        file: undefined,
        overrides: [
          { flag: "listen", value: "127.0.0.1:0", source: "--listen" },
          { flag: "upstream", value: "127.0.0.1:9", source: "--upstream" },
          { flag: "admin", value: "127.0.0.1:0", source: "--admin" },
          { flag: "admin-token-file", value: file, source: "--admin-token-file" },
        ],
      });
      const started = startProxy(config, { logger: pino({ level: "silent" }) });
      await expect(started).rejects.toBeInstanceOf(AdminTokenError);
      await expect(started).rejects.toThrow(why);
      await expect(started).rejects.toThrow(file);
    }
  });

  it("compares hashes, so that any sent value takes the same path", () => {
    const auth = new AdminAuth(TOKEN, false);
    expect(auth.permits(`Bearer ${TOKEN}`)).toBe(true);
    expect(auth.permits(undefined)).toBe(false);
    expect(auth.permits(`Bearer ${"x".repeat(10_000)}`)).toBe(false);
    expect(auth.protects("/healthz")).toBe(false);
    expect(auth.protects("/metrics")).toBe(true);
    expect(new AdminAuth(TOKEN, true).protects("/metrics")).toBe(false);
  });
});

/** An in-process proxy whose config document sets admin.auth.metricsOpen. */
async function startAdminProxyWithDocument(file: string, upstreamPort: number): Promise<{ port: number }> {
  const config = loadConfig({
    file: undefined,
    overrides: [],
    document: {
      admin: { listen: "127.0.0.1:0", auth: { tokenFile: file, metricsOpen: true } },
      workers: 1,
      listeners: [{ name: "default", listen: "127.0.0.1:0", upstream: { address: `127.0.0.1:${upstreamPort}` } }],
    },
  });
  const proxy = await startProxy(config, { logger: pino({ level: "silent" }) });
  onTestFinished(async () => {
    await proxy.shutdown(0);
  });
  return { port: proxy.admin?.address()?.port ?? 0 };
}

const netns = netnsSupport();
const prometheus = toolSupport("prometheus");
const support = !netns.ok ? netns : prometheus;

describe.skipIf(!support.ok)("a real Prometheus and the admin token", () => {
  /** A proxy in a namespace of its own, its admin server guarded by the token in `file`. */
  async function guardedProxyInNamespace(file: string, workers: number) {
    const lab = new Lab();
    onTestFinished(() => lab.destroy());
    const ns = await lab.namespace("prom");
    const proxy = await ProxyProcess.start(ns, lab, [
      "--listen",
      "127.0.0.1:0",
      "--upstream",
      "127.0.0.1:9",
      "--admin",
      "127.0.0.1:0",
      "--admin-token-file",
      file,
      "--workers",
      String(workers),
    ]);
    return { lab, ns, adminPort: await proxy.adminPort() };
  }

  test("scrapes /metrics with the token from a credentials file, with the CLI's two workers behind the supervisor", { timeout: 60_000 }, async () => {
    const file = tokenFile();
    const { lab, ns, adminPort } = await guardedProxyInNamespace(file, 2);
    const prom = await PrometheusProcess.start(lab, { ns, targets: [`127.0.0.1:${adminPort}`], credentialsFile: file });
    const up = await prom.waitFor('up{job="keepalive-proxy"}', (s) => s.value === 1, 30_000);
    expect(up.metric.instance).toBe(`127.0.0.1:${adminPort}`);
    const workers = await prom.waitFor("keepalive_proxy_workers", (s) => s.value === 2, 10_000);
    expect(workers.value).toBe(2);
  });

  test("a Prometheus without the token is refused: its target is down", { timeout: 60_000 }, async () => {
    const { lab, ns, adminPort } = await guardedProxyInNamespace(tokenFile(), 1);
    const prom = await PrometheusProcess.start(lab, { ns, targets: [`127.0.0.1:${adminPort}`] });
    const up = await prom.waitFor('up{job="keepalive-proxy"}', () => true, 30_000);
    expect(up.value).toBe(0);
  });
});
