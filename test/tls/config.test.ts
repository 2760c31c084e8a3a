import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { flag, problemsOf } from "../helpers/config-problems.js";
import { waitUntil } from "../helpers/in-process-proxy.js";
import { startTestProxy } from "../helpers/in-process-proxy.js";
import { startServer } from "../helpers/tcp.js";
import { makeTestPki, type TestPki } from "../helpers/tls-certs.js";
import { connectTlsClient } from "../helpers/tls-peers.js";
import { connect as tlsConnect } from "node:tls";
import { readFileSync } from "node:fs";



describe("TLS config", () => {
  let pki: TestPki;
  beforeAll(() => {
    pki = makeTestPki({ autoRemove: false });
  });
  afterAll(() => pki?.remove());

  it("maps the TLS flags onto client.tls and upstream.tls with the documented defaults", () => {
    const config = loadConfig({
      file: undefined,
      overrides: [
        flag("listen", "127.0.0.1:0"),
        flag("upstream", "db.internal:5432"),
        flag("tls-cert", pki.server.cert),
        flag("tls-key", pki.server.key),
        flag("tls-client-ca", pki.ca.cert),
        flag("upstream-tls", "true"),
        flag("upstream-tls-ca", pki.ca.cert),
        flag("upstream-tls-server-name", "db.example.com"),
        flag("upstream-tls-cert", pki.client.cert),
        flag("upstream-tls-key", pki.client.key),
      ],
    });
    const [l] = config.listeners;
    expect(l?.client.tls).toEqual({ cert: pki.server.cert, key: pki.server.key, clientCa: pki.ca.cert, minVersion: "TLSv1.2", handshakeTimeout: 10_000 });
    expect(l?.upstream.tls).toEqual({ enabled: true, ca: pki.ca.cert, serverName: "db.example.com", cert: pki.client.cert, key: pki.client.key, verify: true });
  });

  it("reports every TLS problem at once, each with its path", () => {
    const problems = problemsOf(() =>
      loadConfig({
        file: undefined,
        document: {
          listeners: [
            {
              name: "a",
              listen: "127.0.0.1:0",
              upstream: { address: "127.0.0.1:1", tls: { enabled: true, cert: pki.client.cert } },
              client: { tls: { cert: pki.server.cert } },
            },
            {
              name: "b",
              listen: "127.0.0.1:0",
              upstream: { address: "127.0.0.1:1" },
              client: { tls: { cert: pki.server.cert, key: pki.server.key }, proxyProtocol: { accept: "v2", trustedSources: ["10.0.0.0/8"] } },
            },
            {
              name: "c",
              listen: "127.0.0.1:0",
              upstream: { address: "127.0.0.1:1" },
              client: { tls: { cert: pki.server.cert, key: pki.server.key, minVersion: "TLSv1.1" } },
            },
          ],
        },
        overrides: [],
      }),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^listeners\[0\]\.upstream\.tls\.key: cert and key go together/),
        expect.stringMatching(/^listeners\[0\]\.client\.tls\.key: cert and key go together/),
        expect.stringMatching(/^listeners\[2\]\.client\.tls\.minVersion: /),
        expect.stringMatching(/^listeners\[1\]\.client\.tls: client\.tls together with client\.proxyProtocol\.accept is not supported yet/),
      ]),
    );
  });

  it("refuses a CA file that holds no certificate", () => {
    const problems = problemsOf(() =>
      loadConfig({
        file: undefined,
        overrides: [
          flag("listen", "127.0.0.1:0"),
          flag("upstream", "127.0.0.1:1"),
          flag("tls-cert", pki.server.cert),
          flag("tls-key", pki.server.key),
          flag("tls-client-ca", pki.server.key),
        ],
      }),
    );
    expect(problems).toEqual([expect.stringMatching(/^--tls-client-ca|listeners\[0\]\.client\.tls\.clientCa: .*holds no PEM certificate/)]);
  });

  it("serves the certificate chosen by the client's SNI, the first one by default", async () => {
    const other = pki.issueServer("sni-other");
    const upstream = await startServer();
    // The second certificate is for localhost too; SNI "localhost" picks it, no SNI falls back to the first.
    const { port } = await startTestProxy(
      {},
      {
        listeners: [
          {
            name: "sni",
            listen: "127.0.0.1:0",
            upstream: { address: `127.0.0.1:${upstream.port}` },
            client: {
              tls: {
                certificates: [
                  { cert: pki.server.cert, key: pki.server.key },
                  { cert: other.cert, key: other.key },
                ],
              },
            },
          },
        ],
      },
    );
    const bySni = await connectTlsClient(port, pki.ca.cert);
    expect(bySni.getPeerCertificate().serialNumber.toUpperCase()).toBe(other.serial);
    const noSni = tlsConnect({ host: "127.0.0.1", port, ca: readFileSync(pki.ca.cert), checkServerIdentity: () => undefined });
    noSni.on("error", () => undefined);
    await waitUntil(() => noSni.getPeerCertificate?.()?.serialNumber, 3000, "the default certificate");
    expect(noSni.getPeerCertificate().subject.CN).toBe("localhost");
    expect(noSni.getPeerCertificate().serialNumber).not.toBe(bySni.getPeerCertificate().serialNumber);
    noSni.destroy();
  });
});
