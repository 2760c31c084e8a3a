import type { Socket } from "node:net";
import { type AdminTestProxy, startAdminProxy } from "./admin-proxy.js";
import { startTestProxy, type TestProxy, waitUntil } from "./in-process-proxy.js";
import { connectClient, type Observed, observe, startServer } from "./tcp.js";

type Flags = Record<string, string | boolean>;

/** An in-process proxy (`P`: with or without its admin server) with one session through it, both ends observed. */
export type ProxiedSession<P extends TestProxy = TestProxy> = P & {
  readonly client: Socket;
  readonly server: Socket;
  readonly atClient: Observed;
  readonly atServer: Observed;
  /** Sends one byte client → upstream and waits for it: after this the session is established. */
  establish(): Promise<void>;
};

/** Starts a loopback upstream and a proxy in front of it (extra CLI flags allowed), and opens one session. */
export function startProxiedSession(flags: Flags = {}): Promise<ProxiedSession> {
  return startSessionThrough(startTestProxy, flags);
}

/** The same with the proxy's admin server up (see startAdminProxy). */
export function startAdminSession(flags: Flags = {}): Promise<ProxiedSession<AdminTestProxy>> {
  return startSessionThrough(startAdminProxy, flags);
}

async function startSessionThrough<P extends TestProxy>(start: (flags: Flags) => Promise<P>, flags: Flags): Promise<ProxiedSession<P>> {
  const upstream = await startServer();
  const proxy = await start({ upstream: `127.0.0.1:${upstream.port}`, ...flags });
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
