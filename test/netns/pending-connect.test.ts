// The connect phase under faults: a client that resets while its upstream
// connect hangs (SYNs dropped) is seen at once, its attempt is `cancelled`
// and the upstream keeps its health; a client that sends a request and a FIN
// before a slow upstream accepts still gets its answer. Everything runs on
// the loopback of one namespace the test creates, so nft can drop SYNs.

import { describe, test } from "vitest";
import { writeTempConfig } from "../helpers/local-proxy.js";
import { parseMetrics, sampleValue } from "../helpers/metrics-text.js";
import { dropSyns, exec, Lab, type Namespace, netnsSupport } from "../helpers/netns.js";
import { PeerProcess } from "../helpers/peer-process.js";
import { ProxyProcess } from "../helpers/proxy-process.js";

const support = netnsSupport();

type OnFinished = (fn: () => Promise<void>) => void;

function openLab(onTestFinished: OnFinished): Lab {
  const lab = new Lab();
  onTestFinished(() => lab.destroy());
  return lab;
}

/** Stops dropping SYNs to `port` (the table dropSyns made). */
async function acceptSyns(ns: Namespace, port: number): Promise<void> {
  await exec(ns, ["nft", "delete", "table", "inet", `kp_dropsyn_${port}`]);
}

/** The proxy's /metrics, read from inside the namespace. */
async function scrape(ns: Namespace, adminPort: number): Promise<ReturnType<typeof parseMetrics>> {
  return parseMetrics((await exec(ns, ["curl", "-sS", "--max-time", "5", `http://127.0.0.1:${adminPort}/metrics`])).stdout);
}

function config(upstreams: readonly number[], connectTimeout: string): string {
  return [
    "admin: { listen: 127.0.0.1:0 }",
    "shutdown: { drainTimeout: 0s }",
    "listeners:",
    "  - name: db",
    "    listen: 127.0.0.1:0",
    "    upstream:",
    `      addresses: [${upstreams.map((p) => `"127.0.0.1:${p}"`).join(", ")}]`,
    `      connectTimeout: ${connectTimeout}`,
    "      failureThreshold: 3",
    "      cooldown: 5m",
    "",
  ].join("\n");
}

describe.skipIf(!support.ok)("pending upstream connects", () => {
  test("a client that resets during a hanging connect ends as client_reset at once, counted cancelled, with no cool-down", { timeout: 60_000 }, async ({
    expect,
    onTestFinished,
  }) => {
    const lab = openLab(onTestFinished);
    const box = await lab.namespace("box");
    const [clients, first, second] = await Promise.all([PeerProcess.start(box, lab), PeerProcess.start(box, lab), PeerProcess.start(box, lab)]);
    const [firstPort, secondPort] = await Promise.all([first.listen("127.0.0.1"), second.listen("127.0.0.1")]);
    await dropSyns(box, firstPort);
    const proxy = await ProxyProcess.start(box, lab, ["--config", writeTempConfig(config([firstPort, secondPort], "20s"))]);
    const adminPort = await proxy.adminPort();

    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      const from = proxy.logs.items.length;
      const client = clients.connect("127.0.0.1", proxy.port);
      await client.waitFor("connected", 5_000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const resetAt = Date.now();
      client.reset();
      const closed = await proxy.waitForSessionClosed(5_000, from);
      expect(closed).toMatchObject({ reason: "client_reset", side: "client" });
      delays.push(Date.parse(String(closed.time)) - resetAt);
    }
    console.log(`session closed after the client's reset, ms: ${delays.join(", ")} (Node ${process.version})`);
    for (const ms of delays) expect(ms).toBeLessThanOrEqual(100);

    const metrics = await scrape(box, adminPort);
    expect(sampleValue(metrics, "keepalive_proxy_upstream_connect_attempts_total", { listener: "db", result: "cancelled" })).toBe(5);
    expect(sampleValue(metrics, "keepalive_proxy_upstream_connect_attempts_total", { listener: "db", result: "timeout" })).toBe(0);
    expect(sampleValue(metrics, "keepalive_proxy_sessions_closed_total", { listener: "db", side: "client", reason: "client_reset" })).toBe(5);
    expect(proxy.logs.items.filter((l) => l.msg === "upstream unreachable")).toEqual([]);

    // Five cancels are not five failures: the first upstream is still tried first.
    await acceptSyns(box, firstPort);
    const client = clients.connect("127.0.0.1", proxy.port);
    await client.waitFor("connected", 5_000);
    const upstream = await first.accepted(1, 5_000);
    client.send("ping");
    await upstream.waitForBytes(4, 5_000);
    expect(second.events.items.find((e) => e.ev === "accepted")).toBeUndefined();
  });

  test("a request and a FIN sent before a slow upstream accepts are delivered, and the answer comes back", { timeout: 30_000 }, async ({
    expect,
    onTestFinished,
  }) => {
    const lab = openLab(onTestFinished);
    const box = await lab.namespace("box");
    const [clients, server] = await Promise.all([PeerProcess.start(box, lab), PeerProcess.start(box, lab)]);
    const port = await server.listen("127.0.0.1");
    await dropSyns(box, port);
    const proxy = await ProxyProcess.start(box, lab, ["--config", writeTempConfig(config([port], "10s"))]);

    const client = clients.connect("127.0.0.1", proxy.port);
    await client.waitFor("connected", 5_000);
    client.send("hello");
    client.end();
    await client.waitFor("finish", 5_000);
    // The proxy's SYN is dropped; the kernel retransmits it after about 1 s, and then it gets through.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await acceptSyns(box, port);
    const upstream = await server.accepted(1, 10_000);
    const ended = await upstream.waitFor("end", 5_000);
    expect(ended.total).toBe(5);
    upstream.send("world");
    upstream.end();
    const answer = await client.waitFor("end", 5_000);
    expect(answer.total).toBe(5);
    const closed = await proxy.waitForSessionClosed(5_000);
    expect(closed).toMatchObject({ reason: "client_eof", bytesFromClient: 5, bytesFromUpstream: 5 });
  });
});
