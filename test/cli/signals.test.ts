import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { waitUntil } from "../helpers/in-process-proxy.js";
import { startLocalProxy, writeTempConfig } from "../helpers/local-proxy.js";
import type { SessionClosed } from "../helpers/proxy-process.js";
import { connectClient, observe, sendRandom, startServer } from "../helpers/tcp.js";

const MB = 1024 * 1024;

function listenerYaml(name: string, upstreamPort: number): string {
  return `  - name: ${name}\n    listen: 127.0.0.1:0\n    upstream: { address: 127.0.0.1:${upstreamPort} }\n`;
}

describe("signals", () => {
  it("SIGHUP starts a new listener while a live session keeps flowing, and refuses a bad config", async () => {
    const upstream = await startServer();
    const file = writeTempConfig(`admin: { listen: null }\nlisteners:\n${listenerYaml("a", upstream.port)}`);
    const proxy = await startLocalProxy(["--config", file]);
    const portA = proxy.port;

    const live = await connectClient(portA);
    const liveServer = await upstream.accepted();
    const atLiveServer = observe(liveServer);
    const atLive = observe(live);
    const firstUp = await sendRandom(live, 1 * MB);
    await waitUntil(() => atLiveServer.bytes === MB || undefined, 5000, "the first megabyte");

    writeFileSync(file, `admin: { listen: null }\nlisteners:\n${listenerYaml("a", upstream.port)}${listenerYaml("b", upstream.port)}`);
    const mark = proxy.logs.items.length;
    proxy.signal("SIGHUP");
    const reloaded = await proxy.waitForLog((l) => l.msg === "config reloaded", 5000, "the reload", mark);
    expect(reloaded.started).toEqual(["b"]);
    const bLine = await proxy.waitForLog((l) => l.msg === "listening" && l.listener === "b", 5000, "b listening", mark);

    // The new listener accepts...
    const viaB = await connectClient(Number(bLine.port));
    const bServer = await upstream.accepted();
    const atB = observe(bServer);
    viaB.write("new listener");
    await waitUntil(() => atB.bytes === 12 || undefined, 3000, "bytes through b");

    // ...and the session from before the reload still flows both ways.
    const secondUp = await sendRandom(live, 1 * MB);
    const down = await sendRandom(liveServer, 1 * MB);
    live.end();
    await waitUntil(() => atLiveServer.ended || undefined, 5000, "the client's FIN at the upstream");
    liveServer.end();
    await waitUntil(() => atLive.closed && atLiveServer.closed, 5000, "the live session to finish");
    expect(atLiveServer.bytes).toBe(2 * MB);
    expect(atLive.hash.digest("hex")).toBe(down);
    expect(atLive.errorCode).toBeUndefined();
    void firstUp;
    void secondUp;
    const closed = (await proxy.waitForLog((l) => l.msg === "session closed" && l.listener === "a", 5000, "a's session line")) as SessionClosed;
    expect(closed).toMatchObject({ reason: "client_eof", side: "client", bytesFromClient: 2 * MB, bytesFromUpstream: 1 * MB });

    // A broken config is refused with one error line; the running config stays.
    writeFileSync(file, "listeners:\n  - name: a\n    listen: nonsense\n");
    const mark2 = proxy.logs.items.length;
    proxy.signal("SIGHUP");
    const refused = await proxy.waitForLog((l) => l.level === "error", 5000, "the refusal", mark2);
    expect(refused.msg).toMatch(/reload refused/);
    expect(proxy.logs.items.slice(mark2).filter((l) => l.level === "error")).toHaveLength(1);
    const stillA = await connectClient(portA);
    const stillServer = await upstream.accepted();
    const atStill = observe(stillServer);
    stillA.write("ok");
    await waitUntil(() => atStill.bytes === 2 || undefined, 3000, "bytes through a after the refused reload");
  });

  it("SIGTERM stops accepting at once, lets a live transfer finish, and exits 0", async () => {
    const upstream = await startServer();
    const proxy = await startLocalProxy(["--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${upstream.port}`, "--admin", "off", "--drain-timeout", "20s"]);
    const client = await connectClient(proxy.port);
    const server = await upstream.accepted();
    const atServer = observe(server);
    const atClient = observe(client);
    client.write("x");
    await waitUntil(() => atServer.bytes === 1 || undefined, 3000, "the session");

    proxy.signal("SIGTERM");
    await proxy.waitForLog((l) => l.msg === "listener stopped accepting", 3000, "the listener to close");
    const refused = observe(connect(proxy.port, "127.0.0.1"));
    await waitUntil(() => refused.closed, 3000, "a new connection to be refused");
    expect(refused.errorCode).toBe("ECONNREFUSED");

    // The live session still carries a transfer both ways and ends cleanly.
    const transfer = observe(server); // counts from here, after the first byte
    const up = await sendRandom(client, 4 * MB);
    const down = await sendRandom(server, 4 * MB);
    client.end();
    await waitUntil(() => transfer.ended || undefined, 5000, "the client's FIN at the upstream");
    server.end();
    await waitUntil(() => atClient.closed && atServer.closed, 10_000, "the transfer to finish");
    expect(transfer.hash.digest("hex")).toBe(up);
    expect(atClient.hash.digest("hex")).toBe(down);
    expect(await proxy.exitCode()).toBe(0);
    const closed = proxy.logs.items.find((l) => l.msg === "session closed") as SessionClosed | undefined;
    expect(closed).toMatchObject({ reason: "client_eof", bytesFromClient: 4 * MB + 1, bytesFromUpstream: 4 * MB });
  });

  it("SIGTERM resets what is still open after the drain timeout, with reason proxy_shutdown", async () => {
    const upstream = await startServer();
    const proxy = await startLocalProxy(["--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${upstream.port}`, "--admin", "off", "--drain-timeout", "1s"]);
    const client = await connectClient(proxy.port);
    const server = await upstream.accepted();
    const atServer = observe(server);
    const atClient = observe(client);
    client.write("idle after this");
    await waitUntil(() => atServer.bytes === 15 || undefined, 3000, "the session");
    const started = Date.now();
    proxy.signal("SIGTERM");
    await waitUntil(() => atClient.closed && atServer.closed, 5000, "both legs reset");
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(3000);
    expect(atClient.errorCode).toBe("ECONNRESET");
    expect(atServer.errorCode).toBe("ECONNRESET");
    expect(await proxy.exitCode()).toBe(0);
    const closed = proxy.logs.items.find((l) => l.msg === "session closed") as SessionClosed | undefined;
    expect(closed).toMatchObject({ reason: "proxy_shutdown", side: "proxy", bytesFromClient: 15 });
  });
});

describe("reload under load", () => {
  it("reloads with 1,000 live sessions without cutting any, and reports how long it took", async () => {
    const upstream = await startServer();
    const file = writeTempConfig(`admin: { listen: null }\nlisteners:\n${listenerYaml("a", upstream.port)}`);
    const proxy = await startLocalProxy(["--config", file]);
    const clients = [];
    const servers = [];
    for (let i = 0; i < 1000; i++) {
      clients.push(await connectClient(proxy.port));
      servers.push(await upstream.accepted());
    }
    writeFileSync(file, `admin: { listen: null }\nlisteners:\n${listenerYaml("a", upstream.port)}${listenerYaml("b", upstream.port)}`);
    const mark = proxy.logs.items.length;
    proxy.signal("SIGHUP");
    const reloaded = await proxy.waitForLog((l) => l.msg === "config reloaded", 10_000, "the reload", mark);
    console.log(`reload with ${reloaded.liveSessions} live sessions took ${reloaded.durationMs} ms`);
    expect(reloaded.liveSessions).toBe(1000);
    const received = servers.map((s) => observe(s));
    const started = Date.now();
    for (const c of clients) c.write("y");
    await waitUntil(() => received.every((r) => r.bytes === 1) || undefined, 10_000, "a byte on each of the 1,000 sessions");
    console.log(`1,000 sessions each carried a byte ${Date.now() - started} ms after SIGHUP`);
    expect(received.filter((r) => r.errorCode !== undefined)).toHaveLength(0);
    expect(proxy.logs.items.filter((l) => l.msg === "session closed")).toHaveLength(0);
  });
});
