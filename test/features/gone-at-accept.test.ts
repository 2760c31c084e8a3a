// A client that resets right after its handshake is gone before the proxy can
// read its address: it ends as client_reset, never as denied or untrusted
// (HAProxy's check-send-proxy health checks do exactly this).

import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { startTestProxy, waitUntil } from "../helpers/in-process-proxy.js";
import { startServer } from "../helpers/tcp.js";

const CLIENTS = 20;

/** Connects and resets the connection the moment the handshake completes. */
function connectAndReset(port: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.resetAndDestroy();
      resolve();
    });
    socket.once("error", () => resolve());
  });
}

describe("clients gone at accept", () => {
  for (const [what, document] of [
    ["a PROXY-protocol listener with trusted sources", { client: { proxyProtocol: { accept: "v2", trustedSources: ["127.0.0.1/32"] } } }],
    ["a listener with an access list", { access: { allow: ["127.0.0.1/32"] } }],
  ] as const) {
    it(`records them as client_reset on ${what}`, async () => {
      const upstream = await startServer();
      const t = await startTestProxy({}, { admin: { listen: null }, listeners: [{ name: "l", listen: "127.0.0.1:0", upstream: { address: `127.0.0.1:${upstream.port}` }, ...document }] });
      await Promise.all(Array.from({ length: CLIENTS }, () => connectAndReset(t.port)));
      await waitUntil(() => t.closed.length === CLIENTS || undefined, 10_000, `${CLIENTS} sessions closed`);
      expect(new Set(t.closed.map((s) => s.reason))).toEqual(new Set(["client_reset"]));
      expect(t.logs.filter((l) => l.level === "warn")).toEqual([]);
    });
  }
});
