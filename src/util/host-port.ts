import { isIPv6 } from "node:net";

/** A host (name, IPv4 or IPv6 literal) and a port, as written `host:port` or `[v6]:port`. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** What the address is for: the fix for a bare port differs (every interface vs. the upstream's host). */
export type AddressRole = "listen" | "connect";

export interface HostPortOptions {
  /** Port 0 (the kernel picks one) is only meaningful where the proxy listens. */
  readonly allowPortZero?: boolean;
  /** Default: listen when port 0 is allowed, connect otherwise. */
  readonly role?: AddressRole;
}

// Letters, digits, dot, dash and underscore: host names as resolvers accept them,
// and IPv4 literals. Anything else (a space, a slash, a scheme) is a typo.
const HOST_NAME = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?$/;

/**
 * Parses `host:port`, `[::1]:port` or `:port` (all IPv4 interfaces, where the
 * proxy listens). Returns an error message that says what to write instead of
 * throwing, so config validation can collect it.
 */
export function parseHostPort(input: string, { allowPortZero = true, role = allowPortZero ? "listen" : "connect" }: HostPortOptions = {}): HostPort | string {
  const text = input.trim();
  if (text === "") return `the address is empty; write HOST:PORT, e.g. ${example(role, "5432")}`;
  if (/^\d+$/.test(text)) return barePort(text, role);
  const split = splitHostPort(text, input);
  if (typeof split === "string") return split;
  const { host, portText } = split;
  if (!/^\d+$/.test(portText)) return `"${input}" has no valid port after the colon; write HOST:PORT with a port from ${allowPortZero ? 0 : 1} to 65535`;
  const port = Number(portText);
  const min = allowPortZero ? 0 : 1;
  if (port < min || port > 65535) return `port ${port} in "${input}" is out of range ${min}-65535`;
  if (host === "") {
    if (role === "connect") return `"${input}" has no host; write the upstream's host too, e.g. 127.0.0.1:${port}`;
    return { host: "0.0.0.0", port };
  }
  return { host, port };
}

/** Splits at the port's colon and checks the host part; a message when either is malformed. */
function splitHostPort(text: string, input: string): { host: string; portText: string } | string {
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0 || text[close + 1] !== ":") return `"${input}" is not [IPv6]:PORT; write it like [::1]:5432`;
    const host = text.slice(1, close);
    if (host === "") return `"${input}" has nothing between its brackets; write [::]:PORT for every interface or [::1]:PORT for loopback`;
    if (!isIPv6(host)) return `"${input}": "${host}" is not an IPv6 address; brackets are only for IPv6 (write a name or IPv4 address without them)`;
    return { host, portText: text.slice(close + 2) };
  }
  const colon = text.lastIndexOf(":");
  if (colon < 0) return `"${input}" has no port; write HOST:PORT, e.g. 127.0.0.1:5432`;
  const host = text.slice(0, colon);
  const portText = text.slice(colon + 1);
  if (host.includes(":")) return `"${input}" looks like IPv6; put the address in brackets: [${host}]:${portText}`;
  if (host !== "" && !HOST_NAME.test(host)) return `"${input}": "${host}" is not a host name or IP address; write HOST:PORT, e.g. db.internal:5432`;
  return { host, portText };
}

function barePort(port: string, role: AddressRole): string {
  return role === "listen"
    ? `"${port}" is a bare port, not HOST:PORT; write 0.0.0.0:${port} for every IPv4 interface, [::]:${port} for IPv6 too, or 127.0.0.1:${port} for this host only`
    : `"${port}" is a bare port, not HOST:PORT; write the upstream's host too, e.g. 127.0.0.1:${port}`;
}

function example(role: AddressRole, port: string): string {
  return role === "listen" ? `0.0.0.0:${port}` : `db.internal:${port}`;
}

/** An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a dual-stack socket reports it) as plain IPv4. */
export function unmapIPv4(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

/** Formats a HostPort back into the form parseHostPort reads. */
export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
