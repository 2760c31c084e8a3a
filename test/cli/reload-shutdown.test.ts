// Reloads and shutdown as one state machine, driven by real signals to the
// CLI: a SIGHUP during a drain is refused, overlapping SIGHUPs leave no
// listener behind, and every session is reset at the drain timeout.

import { writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { httpGet } from "../helpers/http.js";
import { waitUntil } from "../helpers/in-process-proxy.js";
import { startLocalProxy, writeTempConfig } from "../helpers/local-proxy.js";
import { parseMetrics, sampleValue } from "../helpers/metrics-text.js";
import { poll } from "../helpers/poll.js";
import { connectClient, observe, startServer } from "../helpers/tcp.js";

/** A port nothing listens on now (bound once, then released). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Resolves with "accepted" or the connect error's code. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve("accepted");
    });
    socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? "error"));
  });
}

function yaml(upstreamPort: number, listeners: readonly { name: string; port: number }[], drain = "30s"): string {
  return [
    "admin: { listen: 127.0.0.1:0 }",
    `shutdown: { drainTimeout: ${drain} }`,
    "listeners:",
    ...listeners.map((l) => `  - { name: ${l.name}, listen: "127.0.0.1:${l.port}", upstream: { address: "127.0.0.1:${upstreamPort}" } }`),
    "",
  ].join("\n");
}

describe("reload and shutdown", () => {
  it("refuses a SIGHUP during a drain: the reload's listener never accepts, the refusal is counted, and the process exits 0 within the drain timeout", async () => {
    const upstream = await startServer();
    const mainPort = await freePort();
    const addedPort = await freePort();
    const file = writeTempConfig(yaml(upstream.port, [{ name: "a", port: mainPort }], "3s"));
    const proxy = await startLocalProxy(["--config", file]);
    const adminPort = await proxy.adminPort();
    const client = await connectClient(mainPort);
    const atClient = observe(client);
    await upstream.accepted();

    proxy.signal("SIGTERM");
    const termAt = Date.now();
    await proxy.waitForLog((l) => l.msg === "shutting down", 5_000, "the drain to begin");
    writeFileSync(file, yaml(upstream.port, [{ name: "a", port: mainPort }, { name: "added", port: addedPort }], "3s"));
    proxy.signal("SIGHUP");
    await proxy.waitForLog((l) => l.msg === "reload refused: the proxy is shutting down", 5_000, "the refusal");
    const metrics = parseMetrics((await httpGet({ port: adminPort }, "/metrics")).body);
    expect(sampleValue(metrics, "keepalive_proxy_config_reloads_total", { result: "refused" })).toBe(1);
    expect(await tryConnect(addedPort)).toBe("ECONNREFUSED");

    expect(await proxy.exitCode()).toBe(0);
    const exitedAfter = Date.now() - termAt;
    expect(exitedAfter).toBeLessThanOrEqual(3_000 + 3_000);
    // The live session was reset at the drain timeout, not closed with a FIN.
    await waitUntil(() => atClient.closed, 2_000, "the client's close");
    expect(atClient.errorCode).toBe("ECONNRESET");
    expect(proxy.logs.items.some((l) => l.msg === "listening" && l.listener === "added")).toBe(false);
  });

  it("serialises overlapping SIGHUPs: a listener added then removed leaves no port of it open", async () => {
    const upstream = await startServer();
    const mainPort = await freePort();
    // A short drain: the probe connection below leaves a half-closed session behind at exit.
    const file = writeTempConfig(yaml(upstream.port, [{ name: "a", port: mainPort }], "1s"));
    const proxy = await startLocalProxy(["--config", file]);

    // Port 0: two overlapping reloads that each started x would each bind a port, and one would be orphaned.
    writeFileSync(file, yaml(upstream.port, [{ name: "a", port: mainPort }, { name: "x", port: 0 }], "1s"));
    proxy.signal("SIGHUP");
    await new Promise((resolve) => setTimeout(resolve, 10));
    proxy.signal("SIGHUP");
    await proxy.waitForLog((l) => l.msg === "listening" && l.listener === "x", 5_000, "x listening");
    writeFileSync(file, yaml(upstream.port, [{ name: "a", port: mainPort }], "1s"));
    const mark = proxy.logs.items.length;
    proxy.signal("SIGHUP");
    await proxy.waitForLog((l) => l.msg === "config reloaded" && Array.isArray(l.stopped) && l.stopped.includes("x"), 5_000, "x stopped", mark);
    await poll(
      async () => {
        const reloaded = proxy.logs.items.filter((l) => l.msg === "config reloaded" || String(l.msg).startsWith("reload")).length;
        return reloaded >= 2 ? reloaded : undefined;
      },
      5_000,
      "the reloads to finish",
    );
    const xPorts = proxy.logs.items.filter((l) => l.msg === "listening" && l.listener === "x").map((l) => Number(l.port));
    expect(xPorts.length).toBeGreaterThan(0);
    for (const port of xPorts) expect(await tryConnect(port)).toBe("ECONNREFUSED");
    expect(await tryConnect(mainPort)).toBe("accepted");
    proxy.signal("SIGTERM");
    expect(await proxy.exitCode()).toBe(0);
    for (const port of [mainPort, ...xPorts]) expect(await tryConnect(port)).toBe("ECONNREFUSED");
  });
});
