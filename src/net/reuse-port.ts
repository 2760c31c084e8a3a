import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import ipaddr from "ipaddr.js";
import { errnoName } from "./socket-options.js";
import type { Libc } from "./libc.js";

/**
 * Listening sockets shared by several worker processes through SO_REUSEPORT:
 * each worker binds its own socket to the same address and the kernel spreads
 * new connections over them, with no hand-off between processes. Node 20 has
 * no `reusePort` on listen() (it came in 22.12), so the socket is made here
 * through libc, identically on every Node version, and handed to
 * `server.listen({ fd })`.
 */

/** A socket bound (and maybe listening) with SO_REUSEPORT, or why not. */
export type ReusePortSocket = { readonly fd: number; readonly port: number } | { readonly errno: string };

/** Resolves a listen host to one IP address: a literal as it is, "" as all IPv4 interfaces, a name through the resolver. */
export async function listenIp(host: string): Promise<string> {
  if (host === "") return "0.0.0.0";
  if (isIP(host) !== 0) return host;
  return (await lookup(host)).address;
}

/**
 * Opens a SO_REUSEPORT socket on ip:port. With `backlog` it listens (a worker's
 * socket); without, it only holds the port (the supervisor's reservation of a
 * port-0 listener, which receives no connection: only listening sockets join
 * the kernel's reuseport group for new connections).
 */
export function openReusePort(libc: Libc, ip: string, port: number, backlog?: number): ReusePortSocket {
  const family = isIP(ip) === 6 ? 6 : 4;
  const fd = libc.openReusePortSocket(family, sockaddr(ip, port), backlog);
  if (fd < 0) return { errno: errnoName(-fd) };
  const bound = libc.localPort(fd);
  if (bound < 0) {
    libc.closeFd(fd);
    return { errno: errnoName(-bound) };
  }
  return { fd, port: bound };
}

/** struct sockaddr_in / sockaddr_in6 for ip:port, in the kernel's layout (family in host order, port in network order). */
export function sockaddr(ip: string, port: number): Buffer {
  if (isIP(ip) === 6) {
    const buf = Buffer.alloc(28);
    buf.writeUInt16LE(10, 0); // AF_INET6
    buf.writeUInt16BE(port, 2);
    ipv6Bytes(ip).copy(buf, 8);
    return buf;
  }
  const buf = Buffer.alloc(16);
  buf.writeUInt16LE(2, 0); // AF_INET
  buf.writeUInt16BE(port, 2);
  for (const [i, octet] of ip.split(".").entries()) buf.writeUInt8(Number(octet), 4 + i);
  return buf;
}

/** The 16 bytes of an IPv6 address (ipaddr.js expands :: and an embedded IPv4 tail). */
function ipv6Bytes(ip: string): Buffer {
  return Buffer.from(ipaddr.IPv6.parse(ip.split("%")[0] ?? ip).toByteArray());
}
