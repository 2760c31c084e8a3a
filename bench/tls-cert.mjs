// The TLS scenarios' certificate, made at run time with the openssl CLI: a
// bench CA and one ECDSA P-256 server certificate for 127.0.0.1 (and
// localhost) that it signs. Every TLS target serves the same files, and the
// load generator trusts only that CA, so a target serving anything else fails.

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const P256 = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];

/**
 * Writes ca.pem, server.pem (the certificate alone), server.key and
 * server-with-key.pem (certificate then key, HAProxy's `crt` form) into dir
 * and returns their paths.
 */
export function makeBenchCertificate(dir) {
  fs.mkdirSync(dir, { recursive: true });
  const f = (name) => path.join(dir, name);
  const openssl = (...args) => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  openssl("genpkey", ...P256, "-out", f("ca.key"));
  openssl("req", "-x509", "-new", "-key", f("ca.key"), "-subj", "/CN=keepalive-proxy bench CA", "-days", "7", "-out", f("ca.pem"));
  openssl("genpkey", ...P256, "-out", f("server.key"));
  openssl("req", "-new", "-key", f("server.key"), "-subj", "/CN=127.0.0.1", "-out", f("server.csr"));
  fs.writeFileSync(
    f("server.ext"),
    [
      "subjectAltName = IP:127.0.0.1, DNS:localhost",
      "basicConstraints = critical, CA:FALSE",
      "keyUsage = critical, digitalSignature",
      "extendedKeyUsage = serverAuth",
      "",
    ].join("\n"),
  );
  openssl(
    "x509",
    "-req",
    "-in",
    f("server.csr"),
    "-CA",
    f("ca.pem"),
    "-CAkey",
    f("ca.key"),
    "-CAcreateserial",
    "-days",
    "7",
    "-extfile",
    f("server.ext"),
    "-out",
    f("server.pem"),
  );
  fs.writeFileSync(f("server-with-key.pem"), fs.readFileSync(f("server.pem"), "utf8") + fs.readFileSync(f("server.key"), "utf8"));
  return { ca: f("ca.pem"), cert: f("server.pem"), key: f("server.key"), certWithKey: f("server-with-key.pem") };
}
