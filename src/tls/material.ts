import { readFileSync } from "node:fs";
import { createSecureContext, type SecureContext } from "node:tls";
import { X509Certificate } from "node:crypto";
import type { ConfigProblem } from "../config/errors.js";
import type { ClientTlsConfig, Config, UpstreamTlsConfig } from "../config/schema.js";

/** The client leg's TLS, read from its files: what new sessions of a listener are served with. */
export interface ClientTlsSettings {
  /** The default context (the first certificate), and one per SNI name of every further certificate. */
  readonly context: SecureContext;
  readonly byName: ReadonlyMap<string, SecureContext>;
  /** True when clients must present a certificate signed by clientCa. */
  readonly requireClientCert: boolean;
  /** 0 = off. */
  readonly handshakeTimeoutMs: number;
  /** Seconds since the epoch at which the earliest of the served certificates expires. */
  readonly expiresAt: number;
}

/** The upstream leg's TLS, read from its files. */
export interface UpstreamTlsSettings {
  readonly context: SecureContext;
  /** SNI and the verified name; undefined: the upstream's host name (none for an IP address). */
  readonly serverName: string | undefined;
  readonly verify: boolean;
  /** Seconds since the epoch at which the client certificate expires, when one is given. */
  readonly expiresAt: number | undefined;
}

/** A certificate, key or CA file that could not be used, with the fix. */
export class TlsMaterialError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
    this.name = "TlsMaterialError";
  }
}

type Read = (file: string, path: string) => Buffer;

/** Reads a PEM file; a missing or unreadable one is a TlsMaterialError naming the config path. */
function readPem(file: string, path: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new TlsMaterialError(path, `cannot read ${file} (${code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : String(code)})`);
  }
}

/** The certificate's notAfter in seconds since the epoch, or a TlsMaterialError when the file holds no certificate. */
function expiryOf(pem: Buffer, file: string, path: string): number {
  try {
    return Math.floor(new Date(new X509Certificate(pem).validTo).getTime() / 1000);
  } catch {
    throw new TlsMaterialError(path, `${file} holds no PEM certificate`);
  }
}

/** CA bundles must hold at least one certificate: an empty or garbled one would make every peer fail to verify. */
function checkCa(pem: Buffer, file: string, path: string): void {
  expiryOf(pem, file, path);
}

/**
 * Builds a secure context; OpenSSL's refusal of a key that does not match its
 * certificate (or of garbled PEM) becomes a TlsMaterialError with the fix.
 */
function context(options: Parameters<typeof createSecureContext>[0], path: string): SecureContext {
  try {
    return createSecureContext(options);
  } catch (error) {
    const e = error as Error & { code?: string };
    const why = /key values mismatch/i.test(e.message) ? "the key does not match the certificate" : `${e.code ?? "error"}: ${e.message}`;
    throw new TlsMaterialError(path, `${why}; give the certificate and the private key made for it (PEM)`);
  }
}

/** Reads the client leg's certificates, keys and client CA. Throws TlsMaterialError. */
export function loadClientTls(config: ClientTlsConfig, path: string, read: Read = readPem): ClientTlsSettings {
  const pairs = config.certificates ?? [{ cert: config.cert as string, key: config.key as string }];
  const ca = config.clientCa === undefined ? undefined : read(config.clientCa, `${path}.clientCa`);
  if (ca !== undefined) checkCa(ca, config.clientCa as string, `${path}.clientCa`);
  const byName = new Map<string, SecureContext>();
  let first: SecureContext | undefined;
  let expiresAt = Number.POSITIVE_INFINITY;
  pairs.forEach((pair, i) => {
    const at = config.certificates ? `${path}.certificates[${i}]` : path;
    const cert = read(pair.cert, `${at}.cert`);
    const key = read(pair.key, `${at}.key`);
    expiresAt = Math.min(expiresAt, expiryOf(cert, pair.cert, `${at}.cert`));
    const ctx = context({ cert, key, minVersion: config.minVersion, ...(ca ? { ca } : {}) }, `${at}.key`);
    first ??= ctx;
    if (i > 0) for (const name of namesOf(cert)) if (!byName.has(name)) byName.set(name, ctx);
  });
  return {
    context: first as SecureContext,
    byName,
    requireClientCert: ca !== undefined,
    handshakeTimeoutMs: config.handshakeTimeout,
    expiresAt,
  };
}

/** Reads the upstream leg's CA and client certificate. Throws TlsMaterialError. */
export function loadUpstreamTls(config: UpstreamTlsConfig, path: string, read: Read = readPem): UpstreamTlsSettings {
  const ca = config.ca === undefined ? undefined : read(config.ca, `${path}.ca`);
  if (ca !== undefined) checkCa(ca, config.ca as string, `${path}.ca`);
  const cert = config.cert === undefined ? undefined : read(config.cert, `${path}.cert`);
  const key = config.key === undefined ? undefined : read(config.key, `${path}.key`);
  const expiresAt = cert === undefined ? undefined : expiryOf(cert, config.cert as string, `${path}.cert`);
  return {
    context: context({ ...(ca ? { ca } : {}), ...(cert && key ? { cert, key } : {}) }, `${path}.key`),
    serverName: config.serverName,
    verify: config.verify,
    expiresAt,
  };
}

/** The DNS names a certificate is for (subjectAltName, else its CN), lower-case, for SNI. */
function namesOf(pem: Buffer): string[] {
  const x509 = new X509Certificate(pem);
  const sans = (x509.subjectAltName ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.startsWith("DNS:"))
    .map((s) => s.slice(4).toLowerCase());
  if (sans.length > 0) return sans;
  const cn = /CN=([^\n]+)/.exec(x509.subject)?.[1];
  return cn ? [cn.toLowerCase()] : [];
}

/** The SNI context for a name: exact, then a `*.example.com` wildcard, else undefined (the default serves). */
export function contextForName(settings: ClientTlsSettings, servername: string): SecureContext | undefined {
  const name = servername.toLowerCase();
  const exact = settings.byName.get(name);
  if (exact) return exact;
  const dot = name.indexOf(".");
  return dot > 0 ? settings.byName.get(`*${name.slice(dot)}`) : undefined;
}

/**
 * Reads every certificate, key and CA file of the config, so that a
 * missing, garbled or mismatched one is refused like any invalid config (at
 * startup, on reload, by `check`), with the old ones kept in force.
 */
export function tlsProblems(config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  config.listeners.forEach((l, i) => {
    const attempt = (load: () => unknown): void => {
      try {
        load();
      } catch (error) {
        if (!(error instanceof TlsMaterialError)) throw error;
        problems.push({ path: error.path, message: error.message });
      }
    };
    if (l.client.tls) attempt(() => loadClientTls(l.client.tls as ClientTlsConfig, `listeners[${i}].client.tls`));
    if (l.upstream.tls?.enabled) attempt(() => loadUpstreamTls(l.upstream.tls as UpstreamTlsConfig, `listeners[${i}].upstream.tls`));
  });
  return problems;
}
