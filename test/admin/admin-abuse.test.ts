// A slow or abusive admin client never affects proxied sessions: 200 idle
// admin connections and one that sends its headers a byte a second, against
// the proxy's own event loop (an in-process proxy: one loop for both), while
// an echo session through the proxy measures its round trips.

import { connect, type Socket } from "node:net";
import { describe, expect, it, onTestFinished } from "vitest";
import { ADMIN_TIMEOUTS } from "../../src/admin/admin-server.js";
import { measureRoundTrips, startEchoServer } from "../helpers/echo.js";
import { startTestProxy } from "../helpers/in-process-proxy.js";
import { connectClient, type Observed, observe } from "../helpers/tcp.js";

const IDLE = 200;
/** Margin for a loaded machine on top of the header timeout and Node's 1 s check. */
const SLACK_MS = 3_000;

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN;
}

describe("admin abuse", () => {
  it(`keeps echo round trips fast while ${IDLE} idle admin connections and a byte-a-second header sender are held, then cut by the header timeout`, {
    timeout: 30_000,
  }, async () => {
    const echo = await startEchoServer();
    const p = await startTestProxy(
      { admin: "127.0.0.1:0" },
      {
        admin: { maxConnections: 256 },
        workers: 1,
        listeners: [{ name: "echo", listen: "127.0.0.1:0", upstream: { address: `127.0.0.1:${echo.port}` } }],
      },
    );
    const adminPort = p.proxy.admin?.address()?.port ?? 0;
    const session = await connectClient(p.port);
    const before = await measureRoundTrips(
      session,
      (
        (n) => () =>
          n-- <= 0
      )(100),
    );

    const opened: Observed[] = [];
    onTestFinished(() => {
      for (const o of opened) o.socket.destroy();
    });
    const connectAll = Array.from({ length: IDLE }, () => {
      const s = connect({ host: "127.0.0.1", port: adminPort });
      opened.push(observe(s));
      return new Promise<void>((resolve) => s.once("connect", () => resolve()).once("error", () => resolve()));
    });
    await Promise.all(connectAll);
    const started = Date.now();
    // The slow one: a request line and headers, one byte a second, never finished within the timeout.
    const slow: Socket = connect({ host: "127.0.0.1", port: adminPort });
    const slowSeen = observe(slow);
    let slowAnswer = "";
    slow.on("data", (d: Buffer) => {
      slowAnswer += d.toString("latin1");
    });
    const text = "GET /status.json HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let sent = 0;
    const drip = setInterval(() => {
      if (!slow.destroyed && sent < text.length) slow.write(text[sent++] ?? "");
    }, 1_000);
    onTestFinished(() => {
      clearInterval(drip);
      slow.destroy();
    });

    const during = await measureRoundTrips(
      session,
      () => (slowSeen.closed && opened.every((o) => o.closed)) || Date.now() - started > ADMIN_TIMEOUTS.headersMs + SLACK_MS,
    );
    const elapsed = Date.now() - started;

    // Cut by the timeouts: every idle one and the slow one, within the header timeout plus slack.
    expect(opened.filter((o) => !o.closed)).toHaveLength(0);
    expect(slowSeen.closed).toBe(true);
    expect(slowAnswer).toMatch(/^HTTP\/1\.1 408/);
    expect(sent).toBeLessThan(text.length);
    expect(elapsed).toBeLessThan(ADMIN_TIMEOUTS.headersMs + SLACK_MS);
    // The echo session did not notice.
    expect(during.ms.length).toBeGreaterThan(100);
    const p99 = percentile(during.ms, 0.99);
    expect(p99, `echo p99 ${p99.toFixed(2)} ms with the abusers, ${percentile(before.ms, 0.99).toFixed(2)} ms before`).toBeLessThan(50);
    expect(session.destroyed).toBe(false);
  });
});
