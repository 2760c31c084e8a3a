// A free loopback port for a target or server the benchmark starts: bound on
// port 0 and released, so the kernel picks one nothing else holds.
import net from "node:net";

export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}
