// admin.maxConnections: idle admin connections cannot use up the process's
// descriptors, and a probe still gets through while they fill the cap.

import { connect } from "node:net";
import { describe, expect, it, onTestFinished } from "vitest";
import { ADMIN_CAP_GRACE_MS } from "../../src/admin/admin-server.js";
import { loadConfig } from "../../src/config/load.js";
import { startAdminProxy } from "../helpers/admin-proxy.js";
import { roundTrip, startEchoServer } from "../helpers/echo.js";
import { httpGet } from "../helpers/http.js";
import { startTestProxy, waitUntil } from "../helpers/in-process-proxy.js";
import { startLocalProxy } from "../helpers/local-proxy.js";
import { parseMetrics } from "../helpers/metrics-text.js";
import { ensureNofile, setNofile } from "../helpers/nofile.js";
import { poll } from "../helpers/poll.js";
import { connectClient, type Observed, observe } from "../helpers/tcp.js";

/** The default of admin.maxConnections, as documented. */
const DEFAULT_CAP = 64;
/** The report: 1,100 idle admin connections exhausted a limit of 1,024 descriptors. */
const IDLE_CONNECTIONS = 1_000;
/** Half the usual default limit, so that 1,000 connections exceed it as 1,100 exceeded 1,024 in the report. */
const PROXY_NOFILE = 512;

/** Margin for a loaded machine on top of a documented time. */
const SLACK_MS = 5_000;

const REFUSED = "keepalive_proxy_admin_connections_refused_total";
const EVICTED = "keepalive_proxy_admin_connections_evicted_total";

/** Opens `count` connections at once; each resolves once connected or failed. All destroyed when the test finishes. */
async function openIdle(port: number, count: number): Promise<Observed[]> {
  const observed: Observed[] = [];
  onTestFinished(() => {
    for (const o of observed) o.socket.destroy();
  });
  await Promise.all(
    Array.from({ length: count }, () => {
      const socket = connect({ host: "127.0.0.1", port });
      observed.push(observe(socket));
      return new Promise<void>((resolve) => {
        socket.once("connect", () => resolve());
        socket.once("error", () => resolve());
      });
    }),
  );
  return observed;
}

/** A counter's value from a scrape. */
function counter(text: string, name: string): number {
  return parseMetrics(text).get(name)?.samples[0]?.value ?? Number.NaN;
}

function stillOpen(observed: readonly Observed[]): number {
  return observed.filter((o) => !o.closed && o.errorCode === undefined && !o.ended).length;
}

describe("admin connection cap", () => {
  it(`leaves proxied clients served and /healthz answering while ${IDLE_CONNECTIONS} idle admin connections are opened against a limit of ${PROXY_NOFILE} descriptors`, async () => {
    const echo = await startEchoServer();
    const proxy = await startLocalProxy(["--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${echo.port}`, "--admin", "127.0.0.1:0"]);
    const admin = { port: await proxy.adminPort() };
    setNofile(proxy.pid, PROXY_NOFILE);
    // This process holds the other end of every connection.
    ensureNofile(process.pid, 2 * IDLE_CONNECTIONS);
    const before = await connectClient(proxy.port);
    await roundTrip(before);

    const idle = await openIdle(admin.port, IDLE_CONNECTIONS);
    // Every connection beyond the cap is closed by the proxy: none is left waiting in a queue.
    await waitUntil(() => stillOpen(idle) <= DEFAULT_CAP || undefined, 30_000, `at most ${DEFAULT_CAP} idle admin connections left open`);

    // A session open before the flood and one opened after it both carry data.
    await roundTrip(before);
    const after = await connectClient(proxy.port);
    await roundTrip(after);
    // The flood's connections keep their slots for the grace time; then the probe takes an idle one's.
    const health = await poll(
      async () => {
        const res = await httpGet(admin, "/healthz");
        return res.status === 200 ? res : undefined;
      },
      ADMIN_CAP_GRACE_MS + SLACK_MS,
      "/healthz to answer",
    );
    expect(JSON.parse(health.body)).toEqual({ status: "ok" });

    const scrape = (await httpGet(admin, "/metrics")).body;
    console.log(`admin cap figures: ${JSON.stringify({ refused: counter(scrape, REFUSED), evicted: counter(scrape, EVICTED), open: stillOpen(idle) })}`);
    // Each connection beyond the cap was either refused or took an idle one's slot.
    expect(counter(scrape, REFUSED) + counter(scrape, EVICTED)).toBeGreaterThanOrEqual(IDLE_CONNECTIONS - DEFAULT_CAP);
    // At most one line a minute, however many were refused: the first at once.
    const lines = proxy.logs.items.filter((l) => l.msg === "admin connection cap reached");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: "warn", maxConnections: DEFAULT_CAP });
    expect(() => process.kill(proxy.pid, 0)).not.toThrow();
  });

  it("holds admin.maxConnections: a newcomer is reset while every slot is fresh, and takes the slot of the connection idle the longest once it has been idle for a while", async () => {
    const cap = 3;
    const echo = await startEchoServer();
    const t = await startTestProxy(
      { admin: "127.0.0.1:0" },
      { admin: { maxConnections: cap }, listeners: [{ name: "default", listen: "127.0.0.1:0", upstream: { address: `127.0.0.1:${echo.port}` } }] },
    );
    const port = t.proxy.admin?.address()?.port;
    if (port === undefined) throw new Error("the admin server did not start");

    const held: Observed[] = [];
    for (let i = 0; i < cap; i++) held.push(observe(await connectClient(port)));
    const [refused] = await openIdle(port, 1);
    if (refused === undefined) throw new Error("no connection");
    await waitUntil(() => refused.errorCode ?? undefined, 5_000, "the connection beyond the cap to be reset");
    expect(refused.errorCode).toBe("ECONNRESET");
    expect(held.map((o) => o.closed)).toEqual([false, false, false]);

    // Once the held ones have been idle long enough, a request gets through by taking the oldest's slot.
    const health = await poll(
      async () => {
        const res = await httpGet({ port }, "/healthz");
        return res.status === 200 ? res : undefined;
      },
      ADMIN_CAP_GRACE_MS + SLACK_MS,
      "/healthz to get through",
    );
    expect(health.status).toBe(200);
    await waitUntil(() => held[0]?.closed || undefined, 5_000, "the oldest idle connection to be evicted");
    expect(held.map((o) => o.errorCode)).toEqual(["ECONNRESET", undefined, undefined]);

    const scrape = await t.proxy.metrics?.registry.metrics();
    expect(counter(scrape ?? "", EVICTED)).toBeGreaterThanOrEqual(1);
    expect(counter(scrape ?? "", REFUSED)).toBeGreaterThanOrEqual(1);
  });

  it("refuses admin.maxConnections below 1, saying there is no unlimited", () => {
    expect(() =>
      loadConfig({
        file: undefined,
        overrides: [],
        document: { admin: { maxConnections: 0 }, listeners: [{ name: "a", listen: "127.0.0.1:0", upstream: { address: "127.0.0.1:9" } }] },
      }),
    ).toThrow(/admin\.maxConnections.*at least 1/);
  });

  it("counts zero refusals from the start", async () => {
    const p = await startAdminProxy({ upstream: "127.0.0.1:9" });
    const text = await p.scrapeText();
    expect([counter(text, REFUSED), counter(text, EVICTED)]).toEqual([0, 0]);
  });
});
