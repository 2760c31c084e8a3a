// The proxy CLI between real network namespaces: hosts that vanish without a
// word, a NAT that forgets idle flows, an upstream that never answers SYNs,
// and a clean close that must put no RST on the wire. Every scenario builds
// its own namespaces, so they all run at once; the suite takes as long as its
// longest scenario (20 s of idleness through the NAT).

import { afterAll, describe, test } from "vitest";
import {
  conntrackEntries,
  dropSyns,
  exec,
  Lab,
  NAT_ESTABLISHED_TIMEOUT_S,
  type Namespace,
  natChain,
  netnsSupport,
  nstatCounter,
  type ThreeHop,
  threeHop,
  vanish,
} from "../helpers/netns.js";
import { type Ends, type Peers, pingPong, startPeers, startProxy } from "../helpers/ns-session.js";
import type { ProxyLogLine, ProxyProcess } from "../helpers/proxy-process.js";

const support = netnsSupport();
// Test timeouts bound set-up as much as what is measured (namespaces, peers, and with workers three
// processes per proxy), so they are generous: the measured bounds are asserted on their own.
if (!support.ok) console.warn(`skipping the netns tests: ${support.reason}`);

// Both legs: first probe after 2 s idle, then one a second, dead after 3
// unanswered; TCP_USER_TIMEOUT 5 s bounds how long sent data may stay unacknowledged.
const KEEPALIVE = { idleMs: 2_000, intervalMs: 1_000, count: 3, userTimeoutMs: 5_000 } as const;
const KEEPALIVE_ARGS = keepaliveArgs();

/** Allowance for scheduling, process start-up and the RST's trip. */
const SLACK_MS = 2_000;
const PROBES_BOUND_MS = KEEPALIVE.idleMs + KEEPALIVE.intervalMs * KEEPALIVE.count + SLACK_MS;
const USER_TIMEOUT_BOUND_MS = KEEPALIVE.userTimeoutMs + SLACK_MS;
const CONNECT_TIMEOUT_MS = 1_000;
/** How long the NAT scenarios stay idle: four times the NAT's memory. */
const NAT_IDLE_MS = 20_000;
/** How long the control with TCP_USER_TIMEOUT off must stay open; the kernel would retransmit for ~15 min. */
const NO_USER_TIMEOUT_HOLD_MS = 15_000;

/**
 * Proxy flags for KEEPALIVE on both legs; the controls override the idle time
 * or the user timeout. Idle and interval are whole seconds for the kernel.
 */
function keepaliveArgs({
  idle = `${KEEPALIVE.idleMs / 1000}s`,
  userTimeout = `${KEEPALIVE.userTimeoutMs / 1000}s`,
}: {
  idle?: string;
  userTimeout?: string;
} = {}): string[] {
  const interval = `${KEEPALIVE.intervalMs / 1000}s`;
  const count = `${KEEPALIVE.count}`;
  const flags = { "--keepalive-idle": idle, "--keepalive-interval": interval, "--keepalive-count": count };
  return [...Object.entries(flags).flat(), "--user-timeout", userTimeout];
}

interface Timing {
  readonly scenario: string;
  readonly measured: string;
  readonly ms: number;
  readonly boundMs?: number;
}

const timings: Timing[] = [];

/** Keeps a measured time for the summary, and prints it at once. */
function record(t: Timing): void {
  timings.push(t);
  console.log(
    `[netns] ${t.scenario}: ${t.measured} ${t.ms} ms${t.boundMs === undefined ? "" : ` (bound ${t.boundMs} ms)`}`,
  );
}

afterAll(() => {
  if (timings.length === 0) return;
  const rows = timings.map(
    (t) =>
      `  ${t.scenario.padEnd(44)} ${t.measured.padEnd(46)} ${String(t.ms).padStart(6)} ms${t.boundMs === undefined ? "" : `  (bound ${t.boundMs})`}`,
  );
  console.log(`netns timings, Node ${process.version}:\n${rows.join("\n")}`);
});

type OnFinished = (fn: () => Promise<void>) => void;

/** A Lab whose teardown is registered before anything is created. */
function openLab(onTestFinished: OnFinished): Lab {
  const lab = new Lab();
  onTestFinished(() => lab.destroy());
  return lab;
}

/**
 * A drain timeout of 0 makes the SIGTERM in teardown reset sessions left open
 * by a vanished host at once instead of waiting 30 s for them.
 */
const NO_DRAIN_ARGS = ["--drain-timeout", "0"];

interface Session extends Peers, Ends {
  readonly proxy: ProxyProcess;
}

/**
 * Starts an upstream server, the proxy in front of it and a client, and opens
 * one session that has carried 4 bytes each way.
 */
async function openSession(lab: Lab, topo: ThreeHop, proxyArgs: readonly string[]): Promise<Session> {
  const peers = await startPeers(lab, topo);
  const proxy = await startProxy(lab, topo, peers.upstreamPort, [...NO_DRAIN_ARGS, ...proxyArgs]);
  return { proxy, ...peers, ...(await pingPong(topo, peers, proxy)) };
}

const isSessionClosed = (l: ProxyLogLine): boolean => l.msg === "session closed";
const isFailure = (ev: string): boolean => ev === "error" || ev === "close";

/** Calls `probe` every 100 ms until it returns a value, or fails after `timeoutMs`. */
async function poll<T>(probe: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Milliseconds left on an `ss -o` keepalive timer. ss prints them as
 * `[Nmin][S(sec|.)][MMMms]`: `1.960ms` is 1 s 960 ms, `2sec` is 2 s, `500ms` is 0.5 s.
 */
function keepaliveTimerMs(ssLine: string | undefined): number {
  const m = /timer:\(keepalive,(?:(\d+)min)?(?:(\d+)(?:sec|\.))?(?:(\d+)ms)?,/.exec(ssLine ?? "");
  if (m === null) throw new Error(`no keepalive timer in: ${ssLine}`);
  return Number(m[1] ?? 0) * 60_000 + Number(m[2] ?? 0) * 1_000 + Number(m[3] ?? 0);
}

describe.skipIf(!support.ok).concurrent("proxy between network namespaces", () => {
  // Longest scenarios first: at most five tests run at once (maxConcurrency).

  test("keeps an idle session alive for 20 s through a NAT that forgets flows idle for 5 s", {
    timeout: 105_000,
  }, async ({ expect, onTestFinished }) => {
    const lab = openLab(onTestFinished);
    const topo = await natChain(lab);
    const s = await openSession(lab, topo, KEEPALIVE_ARGS);
    const peerFrom = { client: s.clientPeer.events.items.length, upstream: s.upstreamPeer.events.items.length };

    await s.proxy.logs.expectNone(isSessionClosed, NAT_IDLE_MS, "session closed while idle");
    // Keepalive probes refreshed the router's entry all along.
    expect(await conntrackEntries(topo.router, s.upstreamPort)).toHaveLength(1);

    const sentAt = Date.now();
    s.client.send("after idle, client to upstream");
    s.upstream.send("after idle, upstream to client");
    const [atUpstream, atClient] = await Promise.all([
      s.upstream.waitForBytes(4 + 30, 2_000),
      s.client.waitForBytes(4 + 30, 2_000),
    ]);
    expect(s.clientPeer.events.find((e) => isFailure(e.ev), peerFrom.client)).toBeUndefined();
    expect(s.upstreamPeer.events.find((e) => isFailure(e.ev), peerFrom.upstream)).toBeUndefined();
    record({
      scenario: `NAT (${NAT_ESTABLISHED_TIMEOUT_S} s) + keepalive idle 2 s, after 20 s idle`,
      measured: "data delivered both ways within",
      ms: Math.max(atUpstream.t, atClient.t) - sentAt,
      boundMs: 2_000,
    });
  });

  test("loses an idle session in that NAT when keepalive idle is 7200 s (control)", { timeout: 105_000 }, async ({
    expect,
    onTestFinished,
  }) => {
    const lab = openLab(onTestFinished);
    const topo = await natChain(lab);
    const s = await openSession(lab, topo, keepaliveArgs({ idle: "7200s", userTimeout: "0" }));

    await s.proxy.logs.expectNone(isSessionClosed, NAT_IDLE_MS, "session closed while idle");
    expect(await conntrackEntries(topo.router, s.upstreamPort)).toHaveLength(0);

    const from = { client: s.clientPeer.events.items.length, upstream: s.upstreamPeer.events.items.length };
    s.client.send("after idle, client to upstream");
    s.upstream.send("after idle, upstream to client");
    await Promise.all([
      s.upstream.expectNone(["data", "end"], 3_000, from.upstream),
      s.client.expectNone(["data", "end"], 3_000, from.client),
    ]);
    record({
      scenario: "NAT control, keepalive idle 7200 s",
      measured: "no data either way 3 s after 20 s idle",
      ms: 3_000,
    });
  });

  test("keeps a session with unacknowledged data open for 15 s when TCP_USER_TIMEOUT is off (control)", {
    timeout: 95_000,
  }, async ({ expect, onTestFinished }) => {
    const lab = openLab(onTestFinished);
    const topo = await threeHop(lab);
    const s = await openSession(lab, topo, keepaliveArgs({ userTimeout: "0" }));
    s.client.stream();
    await s.upstream.waitForBytes(256 * 1024, 5_000);
    const clientFrom = s.clientPeer.events.items.length;
    const logFrom = s.proxy.logs.items.length;

    await vanish(topo.upstream);
    await Promise.all([
      s.client.expectNone(["error", "close", "end"], NO_USER_TIMEOUT_HOLD_MS, clientFrom),
      s.proxy.logs.expectNone(isSessionClosed, NO_USER_TIMEOUT_HOLD_MS, "session closed", logFrom),
    ]);
    expect(s.proxy.logs.find(isSessionClosed)).toBeUndefined();
    record({
      scenario: "upstream vanishes under data, --user-timeout 0",
      measured: "session still open after",
      ms: NO_USER_TIMEOUT_HOLD_MS,
    });
  });

  test("resets the client within TCP_USER_TIMEOUT when the upstream vanishes under unacknowledged data", {
    timeout: 90_000,
  }, async ({ expect, onTestFinished }) => {
    const lab = openLab(onTestFinished);
    const topo = await threeHop(lab);
    const s = await openSession(lab, topo, KEEPALIVE_ARGS);
    // With data in flight the kernel sends no keepalive probes: only
    // TCP_USER_TIMEOUT can end the retransmissions.
    s.client.stream();
    await s.upstream.waitForBytes(256 * 1024, 5_000);
    const clientFrom = s.clientPeer.events.items.length;

    await vanish(topo.upstream);
    const vanishedAt = Date.now();
    const failure = await s.client.waitForFailure(USER_TIMEOUT_BOUND_MS + 10_000, clientFrom);
    const closed = await s.proxy.waitForSessionClosed(5_000);
    record({
      scenario: "upstream vanishes under data, user timeout 5 s",
      measured: `client ${failure.code ?? failure.ev} after`,
      ms: failure.t - vanishedAt,
      boundMs: USER_TIMEOUT_BOUND_MS,
    });
    // Writing into a reset socket may surface as EPIPE rather than ECONNRESET.
    expect(failure).toMatchObject({ ev: "error", code: expect.stringMatching(/^(ECONNRESET|EPIPE)$/) });
    expect(failure.t - vanishedAt).toBeLessThanOrEqual(USER_TIMEOUT_BOUND_MS);
    expect(closed).toMatchObject({ reason: "upstream_timeout", errno: "ETIMEDOUT" });
  });

  test("resets the client within idle + interval × count when the upstream host vanishes from an idle session", {
    timeout: 90_000,
  }, async ({ expect, onTestFinished }) => {
    const lab = openLab(onTestFinished);
    const topo = await threeHop(lab);
    const s = await openSession(lab, topo, KEEPALIVE_ARGS);

    await vanish(topo.upstream);
    const vanishedAt = Date.now();
    const failure = await s.client.waitForFailure(PROBES_BOUND_MS + 10_000);
    const closed = await s.proxy.waitForSessionClosed(5_000);
    record({
      scenario: "upstream vanishes while idle",
      measured: `client ${failure.code ?? failure.ev} after`,
      ms: failure.t - vanishedAt,
      boundMs: PROBES_BOUND_MS,
    });
    expect(failure).toMatchObject({ ev: "error", code: "ECONNRESET" });
    expect(failure.t - vanishedAt).toBeLessThanOrEqual(PROBES_BOUND_MS);
    expect(closed).toMatchObject({ reason: "upstream_timeout", side: "upstream", errno: "ETIMEDOUT" });
  });

  test("resets the upstream within idle + interval × count when the client host vanishes from an idle session", {
    timeout: 90_000,
  }, async ({ expect, onTestFinished }) => {
    const lab = openLab(onTestFinished);
    const topo = await threeHop(lab);
    const s = await openSession(lab, topo, KEEPALIVE_ARGS);

    await vanish(topo.client);
    const vanishedAt = Date.now();
    const failure = await s.upstream.waitForFailure(PROBES_BOUND_MS + 10_000);
    const closed = await s.proxy.waitForSessionClosed(5_000);
    record({
      scenario: "client vanishes while idle",
      measured: `upstream ${failure.code ?? failure.ev} after`,
      ms: failure.t - vanishedAt,
      boundMs: PROBES_BOUND_MS,
    });
    expect(failure).toMatchObject({ ev: "error", code: "ECONNRESET" });
    expect(failure.t - vanishedAt).toBeLessThanOrEqual(PROBES_BOUND_MS);
    expect(closed).toMatchObject({ reason: "client_timeout", side: "client", errno: "ETIMEDOUT" });
  });

  test("resets the client within the connect timeout when the upstream drops SYNs", { timeout: 80_000 }, async ({
    expect,
    onTestFinished,
  }) => {
    const lab = openLab(onTestFinished);
    const topo = await threeHop(lab);
    const { clientPeer, upstreamPeer, upstreamPort } = await startPeers(lab, topo);
    await dropSyns(topo.upstream, upstreamPort);
    const proxy = await startProxy(lab, topo, upstreamPort, [...NO_DRAIN_ARGS, "--connect-timeout", `${CONNECT_TIMEOUT_MS}ms`, ...KEEPALIVE_ARGS]);

    const client = clientPeer.connect(topo.proxyClientIp, proxy.port);
    const connected = await client.waitFor("connected", 5_000);
    const failure = await client.waitForFailure(CONNECT_TIMEOUT_MS + 10_000);
    const closed = await proxy.waitForSessionClosed(5_000);
    const bound = CONNECT_TIMEOUT_MS + 1_000;
    record({
      scenario: "upstream drops SYNs, connect timeout 1 s",
      measured: `client ${failure.code ?? failure.ev} after`,
      ms: failure.t - connected.t,
      boundMs: bound,
    });
    const attempts = proxy.logs.items.filter((l) => l.msg === "upstream unreachable").length;
    expect(failure).toMatchObject({ ev: "error", code: "ECONNRESET" });
    expect(closed).toMatchObject({ reason: "upstream_connect_timeout" });
    // --connect-timeout bounds how long the client waits, however many attempts fit in it.
    expect(failure.t - connected.t, `${attempts} connect attempts logged`).toBeLessThanOrEqual(bound);
    expect(upstreamPeer.events.find((e) => e.ev === "accepted")).toBeUndefined();
  });

  test("passes each FIN on and puts no RST on the wire when both sides close cleanly", { timeout: 90_000 }, async ({
    expect,
    onTestFinished,
  }) => {
    const lab = openLab(onTestFinished);
    const topo = await threeHop(lab);
    const namespaces: readonly Namespace[] = [topo.client, topo.proxy, topo.upstream];
    const rstsBefore = await Promise.all(namespaces.map((ns) => nstatCounter(ns, "TcpOutRsts")));
    const s = await openSession(lab, topo, KEEPALIVE_ARGS);
    const size = 10 * 1024 * 1024;
    const startedAt = Date.now();

    // The client finishes first; the upstream keeps sending on the half-closed session.
    s.client.send(size);
    s.client.end();
    const upstreamEnd = await s.upstream.waitFor("end", 15_000);
    s.upstream.send(size);
    s.upstream.end();
    const clientEnd = await s.client.waitFor("end", 15_000);
    const [clientClose, upstreamClose] = await Promise.all([
      s.client.waitFor("close", 5_000),
      s.upstream.waitFor("close", 5_000),
    ]);
    const closed = await s.proxy.waitForSessionClosed(5_000);
    record({
      scenario: "clean close, 10 MiB each way",
      measured: "both ends closed after",
      ms: Math.max(clientClose.t, upstreamClose.t) - startedAt,
    });

    expect(upstreamEnd).toMatchObject({ total: 4 + size, sha256: clientClose.sha256Sent });
    expect(clientEnd).toMatchObject({ total: 4 + size, sha256: upstreamClose.sha256Sent });
    expect([clientClose.hadError, upstreamClose.hadError]).toEqual([false, false]);
    expect(s.clientPeer.events.find((e) => e.ev === "error")).toBeUndefined();
    expect(s.upstreamPeer.events.find((e) => e.ev === "error")).toBeUndefined();
    expect(closed).toMatchObject({ reason: "client_eof", bytesFromClient: 4 + size, bytesFromUpstream: 4 + size });
    const rstsAfter = await Promise.all(namespaces.map((ns) => nstatCounter(ns, "TcpOutRsts")));
    expect(rstsAfter.map((n, i) => n - (rstsBefore[i] ?? 0))).toEqual([0, 0, 0]);
  });

  test("arms a keepalive timer on both legs of a live session", { timeout: 80_000 }, async ({
    expect,
    onTestFinished,
  }) => {
    const lab = openLab(onTestFinished);
    const topo = await threeHop(lab);
    const s = await openSession(lab, topo, KEEPALIVE_ARGS);
    const clientLeg = `${topo.proxyClientIp}:${s.proxy.port}`;
    const upstreamLeg = `${topo.upstreamIp}:${s.upstreamPort}`;

    // `ss -tnoi` prints a line per socket (addresses and timer), then an indented line of TCP info.
    const legs = await poll(
      async () => {
        const { stdout } = await exec(topo.proxy, ["ss", "-tnoi", "state", "established"]);
        const sockets = stdout.split("\n").filter((l) => /^\S/.test(l) && !l.startsWith("Recv-Q"));
        const byLeg = {
          client: sockets.find((l) => l.split(/\s+/)[2] === clientLeg),
          upstream: sockets.find((l) => l.split(/\s+/)[3] === upstreamLeg),
        };
        return byLeg.client?.includes("timer:(keepalive,") && byLeg.upstream?.includes("timer:(keepalive,")
          ? byLeg
          : undefined;
      },
      5_000,
      "keepalive timers on both legs in ss -tnoi",
    );
    console.log(`[netns] ss -tnoi in the proxy namespace:\n  ${legs.client}\n  ${legs.upstream}`);
    // The timer counts down from the 2 s idle time (the kernel default would be 7200 s).
    expect(keepaliveTimerMs(legs.client)).toBeLessThanOrEqual(KEEPALIVE.idleMs);
    expect(keepaliveTimerMs(legs.upstream)).toBeLessThanOrEqual(KEEPALIVE.idleMs);
  });
});
