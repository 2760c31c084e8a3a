// Requests to the admin server that an attacker or a careless script would
// send, against the real CLI: none of them may end the process, and a session
// through the proxy keeps carrying data meanwhile. Also the timeouts that keep
// an idle admin connection from holding a descriptor for a minute.

import { connect, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { describe, expect, it, onTestFinished } from "vitest";
import { ADMIN_TIMEOUTS } from "../../src/admin/admin-server.js";
import { startAdminProxy } from "../helpers/admin-proxy.js";
import { roundTrip, startEchoServer } from "../helpers/echo.js";
import { httpGet } from "../helpers/http.js";
import { waitUntil } from "../helpers/in-process-proxy.js";
import { startLocalProxy } from "../helpers/local-proxy.js";
import { connectClient, observe } from "../helpers/tcp.js";

/**
 * Request-targets that `new URL(target, base)` rejects (a scheme-relative URL
 * with a bad port or host), that are not a path at all, or that carry bad
 * percent-escapes: each was sent by curl --path-as-is or a fuzzer.
 */
const BAD_TARGETS = ["//x:99999/", "//[::1/", "*", "http://x:99999/metrics", "/connections?limit=%ff"];

/** Margin for a loaded machine on top of a documented timeout. */
const SLACK_MS = 3_000;

/** Sends raw bytes on a new connection to `port`; resolves with everything the server sent until it closed. */
function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    onTestFinished(() => {
      socket.destroy();
    });
    let answer = "";
    socket.setEncoding("utf8");
    socket.on("data", (s: string) => {
      answer += s;
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(answer));
    socket.on("connect", () => socket.end(bytes));
  });
}

/** Connects to `port` and resolves with the socket once connected; destroyed when the test finishes. */
async function openRaw(port: number): Promise<Socket> {
  const socket = await connectClient(port);
  socket.setEncoding("utf8");
  return socket;
}

describe("hostile admin requests", () => {
  it("answers 400 to request-targets new URL() rejects, and the proxy keeps running with a live session carrying data", async () => {
    const echo = await startEchoServer();
    const proxy = await startLocalProxy(["--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${echo.port}`, "--admin", "127.0.0.1:0"]);
    const admin = { port: await proxy.adminPort() };
    const client = await connectClient(proxy.port);
    await roundTrip(client);

    for (const target of BAD_TARGETS) {
      const res = await httpGet(admin, target);
      expect({ target, status: res.status }).toEqual({ target, status: 400 });
      expect(JSON.parse(res.body).error).toEqual(expect.any(String));
    }
    // Not HTTP at all: Node's parser answers 400 before any handler runs.
    expect(await rawExchange(admin.port, "GARBAGE\r\n\r\n")).toMatch(/^HTTP\/1\.1 400 /);

    // Alive: the same session still echoes, /healthz answers, nothing was logged as our bug.
    await roundTrip(client);
    expect((await httpGet(admin, "/healthz")).status).toBe(200);
    expect(() => process.kill(proxy.pid, 0)).not.toThrow();
    expect(proxy.logs.items.filter((l) => l.level === "error" || l.level === "fatal")).toEqual([]);
  });

  it("still answers absolute-form request-targets, as RFC 9112 requires of a server", async () => {
    const p = await startAdminProxy({ upstream: "127.0.0.1:9" });
    const res = await httpGet(p.admin, `http://127.0.0.1:${p.admin.port}/healthz`);
    expect([res.status, JSON.parse(res.body)]).toEqual([200, { status: "ok" }]);
  });
});

describe("admin timeouts", () => {
  it("answers 408 and closes a connection that sends nothing, within the header timeout rather than a minute", async () => {
    const p = await startAdminProxy({ upstream: "127.0.0.1:9" });
    const started = performance.now();
    const silent = observe(await openRaw(p.admin.port));
    let answer = "";
    silent.socket.on("data", (s: string) => {
      answer += s;
    });
    const bound = ADMIN_TIMEOUTS.headersMs + ADMIN_TIMEOUTS.checkEveryMs + SLACK_MS;
    // The server's FIN: the half-open test socket would wait for our own end before `close`.
    await waitUntil(() => silent.ended || silent.closed, bound, `the silent connection to be closed within ${bound} ms`);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(performance.now() - started).toBeGreaterThanOrEqual(ADMIN_TIMEOUTS.headersMs - ADMIN_TIMEOUTS.checkEveryMs);
  });

  it("closes an idle keep-alive connection after the keep-alive timeout", async () => {
    const p = await startAdminProxy({ upstream: "127.0.0.1:9" });
    const idle = observe(await openRaw(p.admin.port));
    let answer = "";
    idle.socket.on("data", (s: string) => {
      answer += s;
    });
    idle.socket.write("GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n");
    await waitUntil(() => answer.includes('{"status":"ok"}'), 5_000, "the /healthz answer");
    const answeredAt = performance.now();
    const bound = ADMIN_TIMEOUTS.keepAliveMs + ADMIN_TIMEOUTS.checkEveryMs + SLACK_MS;
    await waitUntil(() => idle.ended || idle.closed, bound, `the idle keep-alive connection to be closed within ${bound} ms`);
    expect(idle.errorCode).toBeUndefined();
    expect(performance.now() - answeredAt).toBeGreaterThanOrEqual(ADMIN_TIMEOUTS.keepAliveMs - ADMIN_TIMEOUTS.checkEveryMs);
  });
});
