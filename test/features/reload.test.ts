// Reload edge cases driven in-process, where a race is too narrow to hit
// with signals from outside: an unexpected error inside a reload, a reload
// racing shutdown, renames and host moves on the same port, and connection
// limits that hold across listener generations.

import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import type { Config } from "../../src/config/schema.js";
import { startAdminProxy } from "../helpers/admin-proxy.js";
import { startTestProxy, waitUntil } from "../helpers/in-process-proxy.js";
import { sampleValue } from "../helpers/metrics-text.js";
import { connectClient, observe, startServer } from "../helpers/tcp.js";

/** Resolves with "accepted" or the connect error's code. */
function tryConnect(port: number, host = "127.0.0.1"): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve("accepted");
    });
    socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? "error"));
  });
}

/** The config with its only listener changed by `change`. */
function withListener(config: Config, change: (l: Config["listeners"][number]) => Config["listeners"][number]): Config {
  const [first] = config.listeners;
  if (first === undefined) throw new Error("no listener");
  return { ...config, listeners: [change(first)] };
}

describe("reloads", () => {
  it("keeps serving with the old config when a reload throws something unexpected, and counts a failure", async () => {
    const upstream = await startServer();
    const p = await startAdminProxy({ upstream: `127.0.0.1:${upstream.port}` });
    await p.proxy.requestReload(() => {
      throw new TypeError("injected");
    });
    const line = p.logs.find((l) => l.msg === "reload failed unexpectedly; the running config stays in force");
    expect(line?.level).toBe("error");
    expect(sampleValue(await p.scrape(), "keepalive_proxy_config_reloads_total", { result: "failure" })).toBe(1);
    const client = await connectClient(p.port);
    client.write("still here");
    const atServer = observe(await upstream.accepted());
    await waitUntil(() => atServer.bytes === 10 || undefined, 5_000, "bytes through after the failed reload");
  });

  it("lets a shutdown wait for a reload in flight, then closes the listener that reload started", async () => {
    const upstream = await startServer();
    const t = await startTestProxy({ upstream: `127.0.0.1:${upstream.port}` });
    const current = t.proxy.currentConfig;
    const [base] = current.listeners;
    if (base === undefined) throw new Error("no listener");
    const reloading = t.proxy.requestReload(() => ({ ...current, listeners: [base, { ...base, name: "late", listen: { host: "127.0.0.1", port: 0 } }] }));
    const stopping = t.proxy.shutdown(0);
    await Promise.all([reloading, stopping]);
    expect(t.proxy.listeners.size).toBe(0);
    const late = t.logs.find((l) => l.msg === "listening" && l.listener === "late");
    if (late !== undefined) expect(await tryConnect(Number(late.port))).toBe("ECONNREFUSED");
    expect(await tryConnect(t.port)).toBe("ECONNREFUSED");
    // Reloads after that are refused.
    await t.proxy.requestReload(() => current);
    expect(t.logs.some((l) => l.msg === "reload refused: the proxy is shutting down")).toBe(true);
  });

  it("runs overlapping reload requests one at a time, so a listener they add is bound once", async () => {
    const upstream = await startServer();
    const t = await startTestProxy({ upstream: `127.0.0.1:${upstream.port}` });
    const current = t.proxy.currentConfig;
    const [base] = current.listeners;
    if (base === undefined) throw new Error("no listener");
    const withX = (): Config => ({ ...current, listeners: [base, { ...base, name: "x", listen: { host: "127.0.0.1", port: 0 } }] });
    await Promise.all([t.proxy.requestReload(withX), t.proxy.requestReload(withX), t.proxy.requestReload(withX)]);
    const bound = t.logs.filter((l) => l.msg === "listening" && l.listener === "x");
    expect(bound).toHaveLength(1);
    await t.proxy.requestReload(() => current);
    expect(await tryConnect(Number(bound[0]?.port))).toBe("ECONNREFUSED");
  });

  it("renames a listener on the same address without rebinding its socket", async () => {
    const upstream = await startServer();
    const t = await startTestProxy({ upstream: `127.0.0.1:${upstream.port}` });
    const pinned = withListener(t.proxy.currentConfig, (l) => ({ ...l, listen: { host: "127.0.0.1", port: t.port } }));
    await t.proxy.reload(pinned);
    const bound = t.logs.filter((l) => l.msg === "listening").length;
    const outcome = await t.proxy.reload(withListener(pinned, (l) => ({ ...l, name: "renamed" })));
    expect(outcome.renamed).toEqual(["default→renamed"]);
    expect(outcome.started).toEqual([]);
    expect([...t.proxy.listeners.keys()]).toEqual(["renamed"]);
    expect(t.logs.filter((l) => l.msg === "listening")).toHaveLength(bound);
    const client = await connectClient(t.port);
    client.write("renamed");
    const atServer = observe(await upstream.accepted());
    await waitUntil(() => atServer.bytes === 7 || undefined, 5_000, "bytes through the renamed listener");
    client.resetAndDestroy();
    const summary = await t.nextClosed();
    expect(summary.listener).toBe("renamed");
  });

  it("moves a listener to another host on the same port without EADDRINUSE", async () => {
    const upstream = await startServer();
    const t = await startTestProxy({ upstream: `127.0.0.1:${upstream.port}` });
    const pinned = withListener(t.proxy.currentConfig, (l) => ({ ...l, listen: { host: "127.0.0.1", port: t.port } }));
    await t.proxy.reload(pinned);
    const outcome = await t.proxy.reload(withListener(pinned, (l) => ({ ...l, listen: { host: "0.0.0.0", port: t.port } })));
    expect(outcome.started).toEqual(["default"]);
    expect(t.proxy.listeners.get("default")?.address()).toMatchObject({ address: "0.0.0.0", port: t.port });
    expect(await tryConnect(t.port)).toBe("accepted");
    // And back again.
    await t.proxy.reload(pinned);
    expect(t.proxy.listeners.get("default")?.address()).toMatchObject({ address: "127.0.0.1", port: t.port });
  });

  it("holds maxConnections across a reload that moves the listener to another port", async () => {
    const upstream = await startServer();
    const t = await startTestProxy({ upstream: `127.0.0.1:${upstream.port}` });
    const limited = withListener(t.proxy.currentConfig, (l) => ({ ...l, maxConnections: 2, listen: { host: "127.0.0.1", port: t.port } }));
    await t.proxy.reload(limited);
    const live = [await connectClient(t.port), await connectClient(t.port)];
    await upstream.accepted();
    await upstream.accepted();
    await t.proxy.reload(withListener(limited, (l) => ({ ...l, listen: { host: "127.0.0.1", port: 0 } })));
    const moved = t.proxy.listeners.get("default")?.address()?.port ?? 0;
    expect(moved).not.toBe(t.port);
    const atThird = observe(connect({ host: "127.0.0.1", port: moved }));
    await waitUntil(() => atThird.closed, 5_000, "the third client to be refused");
    expect(t.closed.map((s) => s.reason)).toEqual(["proxy_connection_limit"]);
    expect(live.every((s) => !s.destroyed)).toBe(true);
  });
});
