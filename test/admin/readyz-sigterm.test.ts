// /readyz and /healthz of the real CLI through a SIGTERM: readiness goes at
// once, before the listener stops taking clients; liveness stays until exit.

import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { httpGet } from "../helpers/http.js";
import { startLocalProxy } from "../helpers/local-proxy.js";
import { poll } from "../helpers/poll.js";
import { connectClient, observe, startServer } from "../helpers/tcp.js";

const DRAIN_MS = 3_000;

/** Whether a TCP connect to 127.0.0.1:port is accepted (then closed at once) or refused. */
function tryConnect(port: number): Promise<"accepted" | "refused"> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.resetAndDestroy();
      resolve("accepted");
    });
    socket.once("error", () => resolve("refused"));
  });
}

/** The status of a GET, or the error code when nothing answered. */
async function statusOf(port: number, path: string): Promise<number | string> {
  try {
    return (await httpGet({ port }, path, { timeoutMs: 2_000 })).status;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? String(error);
  }
}

interface Probe {
  /** Date.now() before the first and after the last of its three reads. */
  readonly start: number;
  readonly end: number;
  readonly listener: "accepted" | "refused";
  readonly readyz: number | string;
  readonly healthz: number | string;
}

describe("readiness and liveness through SIGTERM (the CLI)", () => {
  it("answers /readyz 503 from SIGTERM on, before the listener refuses clients, and /healthz 200 until the process exits", { timeout: 30_000 }, async () => {
    const upstream = await startServer();
    const cli = await startLocalProxy([
      "--listen",
      "127.0.0.1:0",
      "--upstream",
      `127.0.0.1:${upstream.port}`,
      "--admin",
      "127.0.0.1:0",
      "--drain-timeout",
      `${DRAIN_MS / 1000}s`,
    ]);
    const port = cli.port;
    const admin = await cli.adminPort();
    expect(await statusOf(admin, "/readyz")).toBe(200);
    expect(await statusOf(admin, "/healthz")).toBe(200);

    // A live session keeps the drain going for the whole drain timeout.
    const client = await connectClient(port);
    const clientAddress = `${client.localAddress}:${client.localPort}`;
    await upstream.accepted();
    const atClient = observe(client);

    const probes: Probe[] = [];
    let exited = false;
    const exit = cli.exitCode().then((code) => {
      exited = true;
      return code;
    });
    // Each probe reads the listener first, then readiness, then liveness: a
    // listener seen refusing before a readiness seen 200 would prove the order wrong.
    const probing = (async () => {
      while (!exited) {
        const start = Date.now();
        const listener = await tryConnect(port);
        const readyz = await statusOf(admin, "/readyz");
        const healthz = await statusOf(admin, "/healthz");
        probes.push({ start, end: Date.now(), listener, readyz, healthz });
      }
    })();
    await poll(async () => (probes.length >= 3 ? true : undefined), 5_000, "three probes before SIGTERM", 10);
    const termAt = Date.now();
    cli.signal("SIGTERM");
    const code = await exit;
    await probing;

    expect(code).toBe(0);
    const seen = JSON.stringify(probes.map((p) => ({ ...p, start: p.start - termAt, end: p.end - termAt })));
    const before = probes.filter((p) => p.end < termAt);
    expect(before.every((p) => p.listener === "accepted" && p.readyz === 200 && p.healthz === 200), seen).toBe(true);
    // Probes begun once the child surely had the signal (it is handled within milliseconds).
    const after = probes.filter((p) => p.start > termAt + 200);
    // Readiness never comes back, and never lags a refusing listener.
    const firstNotReady = probes.findIndex((p) => p.readyz !== 200);
    const firstRefused = probes.findIndex((p) => p.listener === "refused");
    expect(firstNotReady, seen).toBeGreaterThan(0);
    expect(firstRefused, seen).toBeGreaterThanOrEqual(firstNotReady);
    expect(probes.slice(firstNotReady).some((p) => p.readyz === 200), seen).toBe(false);
    // While the session drains: not ready, but alive.
    const draining = after.filter((p) => p.end < termAt + DRAIN_MS - 500);
    expect(draining.length, seen).toBeGreaterThan(3);
    expect(draining.every((p) => p.readyz === 503 && p.healthz === 200 && p.listener === "refused"), seen).toBe(true);
    // /healthz answered 200 until the end of the drain; after that only the
    // moment between the admin server's close and the exit may refuse it.
    const lastHealthy = Math.max(...after.filter((p) => p.healthz === 200).map((p) => p.end));
    expect(lastHealthy - termAt, seen).toBeGreaterThanOrEqual(DRAIN_MS - 500);
    const closing = after.filter((p) => p.end >= termAt + DRAIN_MS - 500);
    expect(closing.every((p) => p.healthz === 200 || p.healthz === "ECONNREFUSED" || p.healthz === "ECONNRESET"), seen).toBe(true);

    // The drain timeout reset the session that did not finish.
    await poll(async () => (atClient.closed ? true : undefined), 5_000, "the client to be reset");
    expect(atClient.errorCode).toBe("ECONNRESET");
    const closed = cli.logs.find((l) => l.msg === "session closed" && l.client === clientAddress);
    expect(closed).toMatchObject({ reason: "proxy_shutdown" });
  });
});
