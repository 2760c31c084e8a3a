// Certificates made at run time by openssl (never committed): a CA, server
// and client certificates it signed, an expired one, and a CA nobody trusts.
// ECDSA P-256 keys: quick to make and to handshake.

import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onTestFinished } from "vitest";

/** Paths of one certificate and its key. */
export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

/** A directory of test certificates, removed when `remove` runs. */
export interface TestPki {
  readonly dir: string;
  readonly ca: CertFiles;
  /** For localhost and 127.0.0.1, signed by `ca`. */
  readonly server: CertFiles;
  /** Issues another server certificate (same names, new serial) from `ca`, valid for `days` (default 60). */
  issueServer(name: string, days?: number): CertFiles & { serial: string };
  readonly client: CertFiles;
  /** A CA the proxy does not trust, and a client certificate from it. */
  readonly otherCa: CertFiles;
  readonly otherClient: CertFiles;
  /** A server certificate from `ca` that expired in 2020. */
  readonly expiredServer: CertFiles;
  remove(): void;
}

function openssl(dir: string, args: readonly string[]): string {
  return execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] }).toString();
}

function key(dir: string, name: string): string {
  openssl(dir, ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${name}.key`]);
  return join(dir, `${name}.key`);
}

function selfSignedCa(dir: string, name: string): CertFiles {
  const k = key(dir, name);
  openssl(dir, [
    "req",
    "-x509",
    "-new",
    "-key",
    k,
    "-days",
    "30",
    "-subj",
    `/CN=${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
    "-out",
    `${name}.pem`,
  ]);
  return { cert: join(dir, `${name}.pem`), key: k };
}

/** A leaf from `ca`: server (localhost, 127.0.0.1) or client usage. */
function leaf(dir: string, ca: CertFiles, name: string, usage: "server" | "client", dates?: { start: string; end: string }, days = 60): CertFiles {
  const k = key(dir, name);
  openssl(dir, ["req", "-new", "-key", k, "-subj", `/CN=${usage === "server" ? "localhost" : name}`, "-out", `${name}.csr`]);
  const ext = usage === "server" ? "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" : "extendedKeyUsage=clientAuth\n";
  writeFileSync(join(dir, `${name}.ext`), ext);
  if (dates === undefined) {
    openssl(dir, [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      ca.cert,
      "-CAkey",
      ca.key,
      "-set_serial",
      `0x${randomSerial()}`,
      "-days",
      String(days),
      "-extfile",
      `${name}.ext`,
      "-out",
      `${name}.pem`,
    ]);
  } else {
    // openssl x509 cannot backdate; a throwaway `openssl ca` database can.
    writeFileSync(join(dir, "index.txt"), "");
    writeFileSync(
      join(dir, "ca.cnf"),
      `[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n`,
    );
    writeFileSync(join(dir, "serial"), `${randomSerial()}\n`);
    openssl(dir, [
      "ca",
      "-batch",
      "-config",
      "ca.cnf",
      "-cert",
      ca.cert,
      "-keyfile",
      ca.key,
      "-in",
      `${name}.csr`,
      "-startdate",
      dates.start,
      "-enddate",
      dates.end,
      "-extfile",
      `${name}.ext`,
      "-notext",
      "-out",
      `${name}.pem`,
    ]);
  }
  return { cert: join(dir, `${name}.pem`), key: k };
}

function randomSerial(): string {
  return Array.from({ length: 16 }, () => Math.floor(Math.random() * 16).toString(16))
    .join("")
    .replace(/^0/, "1");
}

/** The serial of a certificate file, upper-case hex as openssl prints it. */
export function serialOf(certFile: string): string {
  return openssl(".", ["x509", "-in", certFile, "-noout", "-serial"])
    .trim()
    .replace(/^serial=/, "")
    .toUpperCase();
}

/** Makes the test PKI in a temporary directory; removed when the test (or the file's hook) finishes. */
export function makeTestPki({ autoRemove = true } = {}): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "kp-tls-"));
  const ca = selfSignedCa(dir, "ca");
  const otherCa = selfSignedCa(dir, "other-ca");
  const pki: TestPki = {
    dir,
    ca,
    server: leaf(dir, ca, "server", "server"),
    issueServer: (name, days) => {
      const files = leaf(dir, ca, name, "server", undefined, days);
      return { ...files, serial: serialOf(files.cert) };
    },
    client: leaf(dir, ca, "client", "client"),
    otherCa,
    otherClient: leaf(dir, otherCa, "other-client", "client"),
    expiredServer: leaf(dir, ca, "expired", "server", { start: "20200101000000Z", end: "20200102000000Z" }),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
  if (autoRemove) onTestFinished(() => pki.remove());
  return pki;
}
