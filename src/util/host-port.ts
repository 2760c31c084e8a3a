/** A host (name, IPv4 or IPv6 literal) and a port, as written `host:port` or `[v6]:port`. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/**
 * Parses `host:port`, `[::1]:port` or `:port` (all interfaces). Returns an
 * error message instead of throwing, so config validation can collect it.
 */
export function parseHostPort(input: string, { allowPortZero = true } = {}): HostPort | string {
  const text = input.trim();
  let host: string;
  let portText: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0 || text[close + 1] !== ":") return `"${input}" is not [IPv6]:PORT; write it like [::1]:5432`;
    host = text.slice(1, close);
    portText = text.slice(close + 2);
  } else {
    const colon = text.lastIndexOf(":");
    if (colon < 0) return `"${input}" has no port; write HOST:PORT, e.g. 127.0.0.1:5432`;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(":")) return `"${input}" looks like IPv6; put the address in brackets: [${host}]:${portText}`;
  }
  if (!/^\d+$/.test(portText)) return `"${input}" has no valid port; write HOST:PORT with a port from 1 to 65535`;
  const port = Number(portText);
  const min = allowPortZero ? 0 : 1;
  if (port < min || port > 65535) return `port ${port} in "${input}" is out of range ${min}-65535`;
  return { host: host === "" ? "0.0.0.0" : host, port };
}

/** An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a dual-stack socket reports it) as plain IPv4. */
export function unmapIPv4(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

/** Formats a HostPort back into the form parseHostPort reads. */
export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
