import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Socket } from "node:net";
import type { ListenerConfig } from "../config/schema.js";
import type { UpstreamTlsSettings } from "./material.js";
import { originateTls } from "./upstream-tls.js";

/** `check` warns about certificates that expire within this many days. */
export const EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 86_400_000;

/**
 * `check`'s TLS lines for one listener: each certificate the listener
 * presents, with its subject and expiry (a WARN within 30 days, EXPIRED after),
 * and a WARN when upstream verification is off. The files were already
 * proven readable, parseable and matching their keys by loadConfig.
 */
export function describeListenerTls(listener: ListenerConfig, now = Date.now()): { lines: string[]; warnings: number } {
  const lines: string[] = [];
  let warnings = 0;
  const certificate = (leg: string, file: string): void => {
    const x509 = new X509Certificate(readFileSync(file));
    const expires = new Date(x509.validTo);
    const days = Math.floor((expires.getTime() - now) / DAY_MS);
    const verdict = days < 0 ? "  EXPIRED" : days < EXPIRY_WARNING_DAYS ? `  WARN expires within ${EXPIRY_WARNING_DAYS} days` : "";
    if (verdict) warnings += 1;
    lines.push(
      `${listener.name} ${leg} TLS certificate ${file}: subject ${oneLine(x509.subject)}, issuer ${oneLine(x509.issuer)}, expires ${expires.toISOString()} (${days} days)${verdict}`,
    );
  };
  const client = listener.client.tls;
  if (client) {
    for (const pair of client.certificates ?? [{ cert: client.cert as string }]) certificate("client", pair.cert);
    lines.push(
      `${listener.name} client TLS: minVersion ${client.minVersion}, ${client.clientCa ? `client certificates required (CA ${client.clientCa})` : "no client certificates"}`,
    );
  }
  const upstream = listener.upstream.tls;
  if (upstream?.enabled) {
    if (upstream.cert) certificate("upstream", upstream.cert);
    if (!upstream.verify) {
      warnings += 1;
      lines.push(`${listener.name} upstream TLS: WARN verify is false: the upstream's certificate and name are not checked`);
    } else {
      lines.push(
        `${listener.name} upstream TLS: verified against ${upstream.ca ?? "the system's CAs"}${upstream.serverName ? `, name ${upstream.serverName}` : ""}`,
      );
    }
  }
  return { lines, warnings };
}

/** `check --connect`: the TLS handshake over a connected upstream socket, and the peer certificate's subject, issuer and expiry. */
export async function upstreamTlsReport(
  socket: Socket,
  host: string | undefined,
  settings: UpstreamTlsSettings,
  timeoutMs: number,
): Promise<{ ok: boolean; line: string }> {
  const outcome = await originateTls(socket, host, settings, timeoutMs, new AbortController().signal);
  if (!outcome.ok) return { ok: false, line: `TLS FAILED (${outcome.cause}${outcome.code ? `, ${outcome.code}` : ""})` };
  const peer = outcome.socket.getPeerX509Certificate();
  outcome.socket.destroy();
  const what = peer
    ? `peer subject ${oneLine(peer.subject)}, issuer ${oneLine(peer.issuer)}, expires ${new Date(peer.validTo).toISOString()}`
    : "no peer certificate";
  return { ok: true, line: `TLS ${outcome.protocol} ${outcome.cipher}; ${what}` };
}

/** X509 names come one attribute per line. */
function oneLine(name: string): string {
  return name.split("\n").join(", ");
}
