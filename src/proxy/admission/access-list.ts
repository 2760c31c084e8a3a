import ipaddr from "ipaddr.js";

/** A parsed CIDR, ready to match. */
type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

/**
 * Allow and deny lists of client CIDRs, IPv4 and IPv6. Deny wins; an empty
 * allow list allows everyone not denied. IPv4-mapped IPv6 clients
 * (::ffff:10.0.0.1, as a dual-stack listener sees them) match IPv4 CIDRs.
 */
export class AccessList {
  private constructor(
    private readonly allow: readonly Cidr[],
    private readonly deny: readonly Cidr[],
  ) {}

  /** Builds a list; throws on a malformed CIDR (the schema validates them first). */
  static from(allow: readonly string[], deny: readonly string[]): AccessList {
    return new AccessList(allow.map(parseCidr), deny.map(parseCidr));
  }

  /** Whether the list has any rule at all (lets the hot path skip it). */
  get empty(): boolean {
    return this.allow.length === 0 && this.deny.length === 0;
  }

  /** Whether a client address may connect. */
  permits(address: string): boolean {
    if (this.empty) return true;
    const ip = normalize(address);
    if (ip === undefined) return false;
    if (this.deny.some((c) => matches(ip, c))) return false;
    return this.allow.length === 0 || this.allow.some((c) => matches(ip, c));
  }
}

/** Parses `10.0.0.0/8`, `2001:db8::/32`, or a single address (as /32 or /128). */
export function parseCidr(text: string): Cidr {
  if (text.includes("/")) return ipaddr.parseCIDR(text);
  const ip = ipaddr.parse(text);
  return [ip, ip.kind() === "ipv4" ? 32 : 128];
}

/** An error message for a malformed CIDR, or undefined when it parses. */
export function cidrProblem(text: string): string | undefined {
  try {
    parseCidr(text);
    return undefined;
  } catch {
    return `"${text}" is not a CIDR; write it like 10.0.0.0/8, 192.168.1.7 or 2001:db8::/32`;
  }
}

function normalize(address: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  try {
    return ipaddr.process(address);
  } catch {
    return undefined;
  }
}

function matches(ip: ipaddr.IPv4 | ipaddr.IPv6, [range, bits]: Cidr): boolean {
  return ip.kind() === range.kind() && ip.match(range, bits);
}
