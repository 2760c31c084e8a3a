import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/run-cli.js";
import { startServer } from "../helpers/tcp.js";
import { makeTestPki, type TestPki } from "../helpers/tls-certs.js";
import { startStunnel } from "../helpers/tls-peers.js";

describe(`check with TLS on Node ${process.version}`, () => {
  let pki: TestPki;
  beforeAll(() => {
    pki = makeTestPki({ autoRemove: false });
  });
  afterAll(() => pki?.remove());

  function configFile(name: string, yaml: string): string {
    const file = join(pki.dir, `${name}.yaml`);
    writeFileSync(file, yaml);
    return file;
  }

  it("warns about a served certificate that expires within 30 days and prints its subject and expiry", async () => {
    const soon = pki.issueServer("soon", 10);
    const file = configFile(
      "soon",
      `listeners:\n  - name: tls\n    listen: 127.0.0.1:0\n    upstream: { address: "127.0.0.1:1" }\n    client:\n      tls: { cert: ${soon.cert}, key: ${soon.key} }\n`,
    );
    const result = await runCli(["check", "--config", file]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(
      /tls client TLS certificate .*soon\.pem: subject CN=localhost, issuer CN=ca, expires \S+ \(9 days\)\s+WARN expires within 30 days/,
    );
  });

  it("refuses a key that does not match its certificate, and an unreadable CA, naming each path", async () => {
    const file = configFile(
      "mismatch",
      `listeners:\n  - name: tls\n    listen: 127.0.0.1:0\n    upstream:\n      address: "127.0.0.1:1"\n      tls: { enabled: true, ca: ${pki.dir}/missing-ca.pem }\n    client:\n      tls: { cert: ${pki.server.cert}, key: ${pki.client.key} }\n`,
    );
    const result = await runCli(["check", "--config", file]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/listeners\[0\]\.client\.tls\.key: the key does not match the certificate/);
    expect(result.stderr).toMatch(/listeners\[0\]\.upstream\.tls\.ca: cannot read .*missing-ca\.pem \(no such file\)/);
  });

  it("check --connect performs the upstream TLS handshake and prints the peer certificate; verify false is warned", async () => {
    const plain = await startServer();
    const port = await startStunnel(pki.dir, { client: false, connectPort: plain.port, cert: pki.server, name: "check" });
    const file = configFile(
      "connect",
      [
        "listeners:",
        "  - name: good",
        "    listen: 127.0.0.1:0",
        `    upstream: { address: "127.0.0.1:${port}", tls: { enabled: true, ca: ${pki.ca.cert}, serverName: localhost } }`,
        "  - name: wrongca",
        "    listen: 127.0.0.1:0",
        `    upstream: { address: "127.0.0.1:${port}", tls: { enabled: true, ca: ${pki.otherCa.cert}, serverName: localhost } }`,
        "  - name: unverified",
        "    listen: 127.0.0.1:0",
        `    upstream: { address: "127.0.0.1:${port}", tls: { enabled: true, verify: false } }`,
        "",
      ].join("\n"),
    );
    const result = await runCli(["check", "--connect", "--config", file]);
    expect(result.stdout).toMatch(/good upstream 127\.0\.0\.1:\d+: reachable .*; TLS TLSv1\.3 \S+; peer subject CN=localhost, issuer CN=ca, expires \S+Z/);
    expect(result.stdout).toMatch(/wrongca upstream 127\.0\.0\.1:\d+: reachable .*; TLS FAILED \(failed, UNABLE_TO_VERIFY_LEAF_SIGNATURE\)/);
    expect(result.stdout).toMatch(/unverified upstream TLS: WARN verify is false/);
    expect(result.code).not.toBe(0); // one upstream failed its handshake
  });
});
