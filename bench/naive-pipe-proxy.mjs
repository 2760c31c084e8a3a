// The baseline a user could write in ten lines: node bench/naive-pipe-proxy.mjs LISTEN_PORT UPSTREAM_PORT
// allowHalfOpen lets a FIN pass through as a FIN (the bulk upload scenario needs it); keepAlive and noDelay as the other targets.
import net from "node:net";
const [listenPort, upstreamPort] = process.argv.slice(2).map(Number);
const options = { allowHalfOpen: true, keepAlive: true, noDelay: true };
net.createServer(options, (client) => {
  const upstream = net.connect({ ...options, host: "127.0.0.1", port: upstreamPort });
  client.pipe(upstream).pipe(client);
  client.on("error", () => upstream.destroy());
  upstream.on("error", () => client.destroy());
}).listen(listenPort, "127.0.0.1");
