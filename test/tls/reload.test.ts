import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { waitUntil } from "../helpers/in-process-proxy.js";
import { startLocalProxy } from "../helpers/local-proxy.js";
import { observe, sendRandom, startServer } from "../helpers/tcp.js";
import { makeTestPki, serialOf } from "../helpers/tls-certs.js";
import { connectTlsClient } from "../helpers/tls-peers.js";

/** The serial of the certificate a new TLS connection to the proxy is served, upper-case hex. */
async function servedSerial(port: number, ca: string): Promise<string> {
  const socket = await connectTlsClient(port, ca);
  const serial = socket.getPeerCertificate().serialNumber.toUpperCase();
  socket.destroy();
  return serial;
}

/**
 * A test PKI, the server certificate copied to files the test may replace
 * (the ones a SIGHUP re-reads), and a two-worker proxy terminating TLS with
 * them in front of a loopback upstream.
 */
async function startWithLiveCertificate() {
  const pki = makeTestPki();
  const live = { cert: join(pki.dir, "live.pem"), key: join(pki.dir, "live.key") };
  copyFileSync(pki.server.cert, live.cert);
  copyFileSync(pki.server.key, live.key);
  const upstream = await startServer();
  const proxy = await startLocalProxy([
    "--listen",
    "127.0.0.1:0",
    "--upstream",
    `127.0.0.1:${upstream.port}`,
    "--tls-cert",
    live.cert,
    "--tls-key",
    live.key,
    "--workers",
    "2",
    "--admin",
    "off",
  ]);
  return { pki, live, upstream, proxy };
}

describe(`TLS certificate reload on Node ${process.version}`, () => {
  it("serves a new certificate to new connections after SIGHUP in both workers while a session opened before keeps carrying data", async () => {
    const { pki, live, upstream, proxy } = await startWithLiveCertificate();
    const oldSerial = serialOf(pki.server.cert);

    const before = await connectTlsClient(proxy.port, pki.ca.cert);
    expect(before.getPeerCertificate().serialNumber.toUpperCase()).toBe(oldSerial);
    const server = await upstream.accepted();
    const atServer = observe(server);

    await waitUntil(() => proxy.logs.items.filter((l) => l.msg === "listening").length >= 2 || undefined, 10_000, "both workers listening");
    const next = pki.issueServer("server-next");
    copyFileSync(next.cert, live.cert);
    copyFileSync(next.key, live.key);
    const mark = proxy.logs.items.length;
    proxy.signal("SIGHUP");
    await proxy.waitForLog((l) => l.msg === "config reloaded", 10_000, "the reload", mark);

    // Several connections, so that both workers (SO_REUSEPORT spreads them) are seen.
    for (let i = 0; i < 6; i++) expect(await servedSerial(proxy.port, pki.ca.cert)).toBe(next.serial);

    // The session opened before the reload is untouched and still carries data.
    const sent = await sendRandom(before, 256 * 1024);
    await waitUntil(() => atServer.bytes === 256 * 1024, 5000, "the old session's bytes at the upstream");
    expect(atServer.hash.digest("hex")).toBe(sent);
    expect(before.destroyed).toBe(false);
  });

  it("refuses a reload whose key does not match its certificate and keeps serving the old certificate", async () => {
    const { pki, live, proxy } = await startWithLiveCertificate();
    // Both workers read the files when they start: wait for both before spoiling them.
    await waitUntil(() => proxy.logs.items.filter((l) => l.msg === "listening").length >= 2 || undefined, 10_000, "both workers listening");
    copyFileSync(pki.client.key, live.key); // some other key
    const mark = proxy.logs.items.length;
    proxy.signal("SIGHUP");
    const refused = await proxy.waitForLog((l) => l.msg.startsWith("reload refused"), 10_000, "the refused reload", mark);
    expect(JSON.stringify(refused.problems)).toMatch(/client\.tls\.key: the key does not match the certificate/);
    for (let i = 0; i < 4; i++) expect(await servedSerial(proxy.port, pki.ca.cert)).toBe(serialOf(pki.server.cert));
  });
});
