// Run as `ip netns exec NS node ns-bridge.mjs SOCKET_PATH HOST PORT`: accepts
// connections on a Unix socket and forwards each to HOST:PORT inside the
// namespace. Unix sockets are named in the file system, which every network
// namespace shares, so a test in the root namespace reaches a server (the
// proxy's admin server, Prometheus) that listens on a namespace's own
// loopback, with no veth, route or address in the root namespace.
// Prints {"ev":"ready"} once listening; exits when stdin closes.

import { rmSync } from 'node:fs';
import net from 'node:net';

const [socketPath, host, port] = process.argv.slice(2);
if (!socketPath || !host || !port) {
  process.stderr.write('usage: ns-bridge.mjs SOCKET_PATH HOST PORT\n');
  process.exit(2);
}
rmSync(socketPath, { force: true });
const server = net.createServer((inbound) => {
  const outbound = net.connect({ host, port: Number(port) });
  inbound.on('error', () => outbound.destroy());
  outbound.on('error', () => inbound.destroy());
  inbound.pipe(outbound).pipe(inbound);
});
server.listen(socketPath, () => process.stdout.write(`${JSON.stringify({ ev: 'ready', socketPath })}\n`));
process.stdin.resume();
process.stdin.on('end', () => {
  server.close();
  rmSync(socketPath, { force: true });
  process.exit(0);
});
