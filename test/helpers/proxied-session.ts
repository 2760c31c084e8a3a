import type { Socket } from "node:net";
import { startTestProxy, type TestProxy, waitUntil } from "./in-process-proxy.js";
import { connectClient, type Observed, observe, startServer } from "./tcp.js";

/** An in-process proxy with one session through it, both ends observed. */
export interface ProxiedSession extends TestProxy {
  readonly client: Socket;
  readonly server: Socket;
  readonly atClient: Observed;
  readonly atServer: Observed;
  /** Sends one byte client → upstream and waits for it: after this the session is established. */
  establish(): Promise<void>;
}

/** Starts a loopback upstream and a proxy in front of it (extra CLI flags allowed), and opens one session. */
export async function startProxiedSession(flags: Record<string, string | boolean> = {}): Promise<ProxiedSession> {
  const upstream = await startServer();
  const proxy = await startTestProxy({ upstream: `127.0.0.1:${upstream.port}`, ...flags });
  const client = await connectClient(proxy.port);
  const server = await upstream.accepted();
  const atClient = observe(client);
  const atServer = observe(server);
  return {
    ...proxy,
    client,
    server,
    atClient,
    atServer,
    establish: async () => {
      const before = atServer.bytes;
      client.write("x");
      await waitUntil(() => atServer.bytes > before || undefined, 3000, "a byte through the proxy");
    },
  };
}
