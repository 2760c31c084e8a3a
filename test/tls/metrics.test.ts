import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAdminProxy } from "../helpers/admin-proxy.js";
import { waitUntil } from "../helpers/in-process-proxy.js";
import { allSamples, parseMetrics } from "../helpers/metrics-text.js";
import { startServer } from "../helpers/tcp.js";
import { makeTestPki, type TestPki } from "../helpers/tls-certs.js";
import { connectTlsClient } from "../helpers/tls-peers.js";
import { runTool } from "../helpers/tools.js";

describe(`TLS metrics on Node ${process.version}`, () => {
  let pki: TestPki;
  beforeAll(() => {
    pki = makeTestPki({ autoRemove: false });
  });
  afterAll(() => pki?.remove());

  it("counts handshakes by leg and result, times the successful ones, and exports the served certificate's expiry", async () => {
    const upstream = await startServer();
    const p = await startAdminProxy({
      upstream: `127.0.0.1:${upstream.port}`,
      "tls-cert": pki.server.cert,
      "tls-key": pki.server.key,
      "tls-client-ca": pki.ca.cert,
    });
    const good = await connectTlsClient(p.port, pki.ca.cert, pki.client);
    await upstream.accepted();
    good.destroy();
    await runTool(["timeout", "10", "openssl", "s_client", "-connect", `127.0.0.1:${p.port}`, "-CAfile", pki.ca.cert, "-quiet"], { input: "no cert\n" });
    await waitUntil(() => p.closed.length === 2 || undefined, 5000, "both sessions closed");

    const families = parseMetrics(await p.scrapeText());
    const value = (name: string, labels: Record<string, string>): number | undefined =>
      allSamples(families).find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
    const base = { listener: "default", side: "client" };
    expect(value("keepalive_proxy_tls_handshakes_total", { ...base, result: "ok" })).toBe(1);
    expect(value("keepalive_proxy_tls_handshakes_total", { ...base, result: "failed" })).toBe(1);
    expect(value("keepalive_proxy_tls_handshakes_total", { ...base, result: "timeout" })).toBe(0);
    expect(value("keepalive_proxy_tls_handshake_duration_seconds_count", base)).toBe(1);
    expect(value("keepalive_proxy_sessions_closed_total", { listener: "default", reason: "client_tls_handshake_failed" })).toBe(1);
    const notAfter = Math.floor(new Date(new X509Certificate(readFileSync(pki.server.cert)).validTo).getTime() / 1000);
    expect(value("keepalive_proxy_tls_certificate_expiry_timestamp_seconds", base)).toBe(notAfter);
    // A plaintext upstream leg has no TLS series.
    expect(value("keepalive_proxy_tls_handshakes_total", { listener: "default", side: "upstream", result: "ok" })).toBeUndefined();
  });
});
