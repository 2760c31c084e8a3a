import { isIPv4, isIPv6 } from "node:net";

/**
 * The PROXY protocol (HAProxy's spec, versions 1 and 2): a header before the
 * stream that carries the original client's address across a proxy. Encoding
 * and parsing are pure functions over buffers.
 */

export type ProxyProtocolVersion = "v1" | "v2";

/** An endpoint as the header carries it. */
export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

/** A parsed header. `source` is absent for v1 UNKNOWN and v2 LOCAL (health checks). */
export interface ProxyHeader {
  readonly version: ProxyProtocolVersion;
  readonly source?: Endpoint;
  readonly destination?: Endpoint;
}

export type ParseResult =
  | { readonly status: "incomplete" }
  | { readonly status: "invalid"; readonly why: string }
  | { readonly status: "ok"; readonly header: ProxyHeader; readonly length: number };

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from("PROXY ");
const V1_MAX = 107; // spec: the longest v1 line, CRLF included
const V2_MAX_PAYLOAD = 2048; // generous bound on TLVs; the spec allows up to 65535, HAProxy sends far less

/** Encodes a header for these endpoints; mixed or unknown families become UNKNOWN (v1) / LOCAL-less UNSPEC (v2). */
export function encodeProxyHeader(version: ProxyProtocolVersion, source: Endpoint, destination: Endpoint): Buffer {
  return version === "v1" ? encodeV1(source, destination) : encodeV2(source, destination);
}

function family(a: Endpoint, b: Endpoint): 4 | 6 | undefined {
  if (isIPv4(a.address) && isIPv4(b.address)) return 4;
  if (isIPv6(a.address) && isIPv6(b.address)) return 6;
  return undefined;
}

function encodeV1(source: Endpoint, destination: Endpoint): Buffer {
  const fam = family(source, destination);
  if (fam === undefined) return Buffer.from("PROXY UNKNOWN\r\n");
  return Buffer.from(`PROXY TCP${fam} ${source.address} ${destination.address} ${source.port} ${destination.port}\r\n`);
}

function encodeV2(source: Endpoint, destination: Endpoint): Buffer {
  const fam = family(source, destination);
  if (fam === undefined) {
    const header = Buffer.alloc(16);
    V2_SIGNATURE.copy(header);
    header[12] = 0x21; // version 2, PROXY
    header[13] = 0x00; // UNSPEC
    return header;
  }
  const addrLen = fam === 4 ? 4 : 16;
  const header = Buffer.alloc(16 + addrLen * 2 + 4);
  V2_SIGNATURE.copy(header);
  header[12] = 0x21;
  header[13] = fam === 4 ? 0x11 : 0x21; // AF_INET/AF_INET6 over STREAM
  header.writeUInt16BE(addrLen * 2 + 4, 14);
  writeAddress(header, 16, source.address, fam);
  writeAddress(header, 16 + addrLen, destination.address, fam);
  header.writeUInt16BE(source.port, 16 + addrLen * 2);
  header.writeUInt16BE(destination.port, 16 + addrLen * 2 + 2);
  return header;
}

function writeAddress(buf: Buffer, offset: number, address: string, fam: 4 | 6): void {
  if (fam === 4) {
    address.split(".").forEach((octet, i) => {
      buf[offset + i] = Number(octet);
    });
    return;
  }
  expandIPv6(address).forEach((group, i) => {
    buf.writeUInt16BE(group, offset + i * 2);
  });
}

/** Expands an IPv6 text address (with ::, and an embedded IPv4 tail) into 8 groups. */
function expandIPv6(address: string): number[] {
  let text = address;
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === undefined || tail === "" ? [] : tail.split(":");
  const zeros = tail === undefined ? [] : new Array<string>(8 - headGroups.length - tailGroups.length).fill("0");
  return [...headGroups, ...zeros, ...tailGroups].map((g) => Number.parseInt(g, 16));
}

/** Parses a header at the start of `data` in the accepted version(s). */
export function parseProxyHeader(data: Buffer, accept: ProxyProtocolVersion | "any"): ParseResult {
  const looksV2 = startsWith(data, V2_SIGNATURE);
  const looksV1 = startsWith(data, V1_PREFIX);
  if ((accept === "v2" || accept === "any") && looksV2 !== false) {
    return looksV2 === undefined ? { status: "incomplete" } : parseV2(data);
  }
  if ((accept === "v1" || accept === "any") && looksV1 !== false) {
    return looksV1 === undefined ? { status: "incomplete" } : parseV1(data);
  }
  return { status: "invalid", why: `no PROXY protocol ${accept === "any" ? "v1 or v2" : accept} header` };
}

/** true: starts with prefix; undefined: too short to tell yet; false: does not. */
function startsWith(data: Buffer, prefix: Buffer): boolean | undefined {
  const n = Math.min(data.length, prefix.length);
  if (data.compare(prefix, 0, n, 0, n) !== 0) return false;
  return data.length >= prefix.length ? true : undefined;
}

function parseV1(data: Buffer): ParseResult {
  const end = data.indexOf("\r\n");
  if (end < 0) return data.length >= V1_MAX ? { status: "invalid", why: "v1 header longer than 107 bytes" } : { status: "incomplete" };
  if (end + 2 > V1_MAX) return { status: "invalid", why: "v1 header longer than 107 bytes" };
  const parts = data.toString("latin1", 0, end).split(" ");
  const length = end + 2;
  if (parts[1] === "UNKNOWN") return { status: "ok", header: { version: "v1" }, length };
  if (parts.length !== 6 || (parts[1] !== "TCP4" && parts[1] !== "TCP6")) return { status: "invalid", why: "malformed v1 header" };
  const [, proto, srcAddr = "", dstAddr = "", srcPort = "", dstPort = ""] = parts;
  const valid = proto === "TCP4" ? isIPv4 : isIPv6;
  if (!valid(srcAddr) || !valid(dstAddr) || !isPort(srcPort) || !isPort(dstPort)) return { status: "invalid", why: "malformed v1 addresses" };
  return {
    status: "ok",
    header: { version: "v1", source: { address: srcAddr, port: Number(srcPort) }, destination: { address: dstAddr, port: Number(dstPort) } },
    length,
  };
}

function isPort(text: string): boolean {
  return /^(0|[1-9]\d{0,4})$/.test(text) && Number(text) <= 65535;
}

function parseV2(data: Buffer): ParseResult {
  if (data.length < 16) return { status: "incomplete" };
  const verCmd = data[12] ?? 0;
  const fam = data[13] ?? 0;
  const payload = data.readUInt16BE(14);
  if (verCmd >> 4 !== 2) return { status: "invalid", why: "v2 header with a wrong version" };
  if (payload > V2_MAX_PAYLOAD) return { status: "invalid", why: "v2 header too long" };
  if (data.length < 16 + payload) return { status: "incomplete" };
  const length = 16 + payload;
  const command = verCmd & 0x0f;
  if (command === 0x0) return { status: "ok", header: { version: "v2" }, length }; // LOCAL: the balancer's own check
  if (command !== 0x1) return { status: "invalid", why: "v2 header with an unknown command" };
  if (fam === 0x11 && payload >= 12) {
    const ip = (o: number): string => `${data[o]}.${data[o + 1]}.${data[o + 2]}.${data[o + 3]}`;
    return { status: "ok", header: { version: "v2", source: { address: ip(16), port: data.readUInt16BE(24) }, destination: { address: ip(20), port: data.readUInt16BE(26) } }, length };
  }
  if (fam === 0x21 && payload >= 36) {
    const ip = (o: number): string => Array.from({ length: 8 }, (_, i) => data.readUInt16BE(o + i * 2).toString(16)).join(":");
    return { status: "ok", header: { version: "v2", source: { address: ip(16), port: data.readUInt16BE(48) }, destination: { address: ip(32), port: data.readUInt16BE(50) } }, length };
  }
  if ((fam & 0xf0) === 0x00) return { status: "ok", header: { version: "v2" }, length }; // UNSPEC
  return { status: "invalid", why: "v2 header with an unsupported address family" };
}
