import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import { StartupError, StartupErrorCode } from "../errors.js";
import { formatHostPort, type HostPort } from "../util/host-port.js";
import { ConnectionCap } from "./connection-cap.js";
import { type ConnectionsSource, listConnections, parseLimit } from "./connections.js";
import { readiness, type ReadinessSource } from "./readiness.js";
import { type AdminConnectionCounters, RefusalReport } from "./refusal-report.js";
import { parseRequestTarget, type RequestTarget } from "./request-target.js";
import { SliceScheduler } from "./slice-scheduler.js";

/** Everything the admin endpoints read; KeepaliveProxy fits it as it is. */
export interface AdminSource extends ReadinessSource, ConnectionsSource {}

/** The metrics registry as the admin server uses it: prom-client's Registry fits it. */
export interface MetricsText {
  readonly contentType: string;
  metrics(): Promise<string>;
}

export interface AdminDeps {
  readonly source: AdminSource;
  readonly registry: MetricsText;
  readonly logger: Logger;
  /** Where refused and evicted connections are counted; ProxyMetrics' adminConnections. */
  readonly counters?: AdminConnectionCounters;
  /**
   * The /connections body, in pieces, when the sessions live elsewhere (the
   * supervisor asks its workers); by default the source's own sessions are
   * listed in slices.
   */
  readonly listConnections?: (options: { readonly limit: number; readonly listener: string | undefined }) => AsyncGenerator<string, unknown>;
}

/** The admin config beyond its address. */
export interface AdminOptions {
  /** admin.maxConnections: connections open at once. */
  readonly maxConnections: number;
}

/** The admin address could not be bound. */
export class AdminListenError extends StartupError {
  constructor(address: string, cause: NodeJS.ErrnoException) {
    super(StartupErrorCode.ListenFailed, `the admin server cannot listen on ${address}: ${explain(cause)}`, { cause });
    this.name = "AdminListenError";
  }
}

function explain(error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case "EADDRINUSE":
      return "the address is already in use (EADDRINUSE); choose another with --admin HOST:PORT, or turn the admin server off with --admin off";
    case "EACCES":
      return "permission denied (EACCES); use a port of 1024 or more";
    case "EADDRNOTAVAIL":
      return "no interface has this address (EADDRNOTAVAIL); use an address of this host";
    default:
      return `${error.code ?? "error"}: ${error.message}`;
  }
}

const JSON_TYPE = "application/json; charset=utf-8";

type Handler = (target: RequestTarget, req: IncomingMessage, res: ServerResponse) => Promise<void> | void;

/** How long a request in flight at close may take to finish: a scrape takes milliseconds. */
const CLOSE_GRACE_MS = 1_000;

/**
 * The admin server's timeouts, in ms. Node's defaults (60 s for headers,
 * checked every 30 s; 300 s per request) let an idle connection hold a
 * descriptor for a minute or more; every client of this server (a scraper, a
 * probe, curl) sends its request at once.
 */
export const ADMIN_TIMEOUTS = {
  /** From accept (or the end of the last response) to the end of the request's headers; then 408. */
  headersMs: 5_000,
  /** For the whole request to arrive; Node requires it above headersMs. */
  requestMs: 10_000,
  /** An idle keep-alive connection is closed after this; a scraper reconnects each interval. */
  keepAliveMs: 5_000,
  /** How often Node checks the two above: their precision. */
  checkEveryMs: 1_000,
  /** No byte moved either way on the socket (a client that stopped reading a long answer): closed. */
  socketIdleMs: 30_000,
} as const;

/** A new connection younger than this keeps its slot when the cap is reached: time to send its request, ms. */
export const ADMIN_CAP_GRACE_MS = 1_000;
/** The `admin connection cap reached` line is written at most once per this, ms. */
const CAP_LOG_INTERVAL_MS = 60_000;
/**
 * Each slice of /connections work holds the event loop for about this long,
 * ms: a few sessions' worth of getsockopt calls, small next to the latency of
 * any network, and long enough that yielding costs little.
 */
export const SLICE_BUDGET_MS = 2;
/**
 * After each slice the listing rests seven times as long: it takes at most an
 * eighth of the process's time. On a host short of CPU (a busy machine, a
 * container's CPU quota) a process that wants a quarter of a core or more is
 * preempted mid-slice for tens of ms, and every byte in flight waits with it;
 * at an eighth it stays well under its fair share and is woken promptly for
 * its sockets (measured on 2 cores at load 5–7 with 5,000 sessions and two
 * pollers: echo p99 10–80 ms at a quarter, 8–25 ms at an eighth). 10,000 sessions then take about 5 s to list on
 * an idle host: a diagnostic can wait, bytes in flight should not.
 */
export const SLICE_REST_FACTOR = 7;

/**
 * The admin HTTP server, on its own address (loopback by default: /connections
 * shows client addresses). GET or HEAD:
 * - /metrics: the proxy's registry in Prometheus' text format;
 * - /healthz: 200 while the process runs, also while it drains;
 * - /readyz: 200 when every listener is bound and the proxy is not draining, else 503;
 * - /connections: every live session with both legs as the kernel reports them now.
 * Anything else is 404 (405 for other methods, 400 for a request-target
 * that is not a path). Nothing a request does can throw out of a handler: a
 * failure is logged at error and answered 500, and the server keeps serving.
 * At most `maxConnections` connections are open at once (ConnectionCap).
 */
export class AdminServer {
  private readonly server: Server;
  private readonly routes: ReadonlyMap<string, Handler>;
  private readonly cap: ConnectionCap;
  private readonly refusals: RefusalReport;
  /** Shared by every /connections request, so that concurrent listings take turns. */
  private readonly slices = new SliceScheduler(SLICE_BUDGET_MS, SLICE_REST_FACTOR);
  private closing: Promise<void> | undefined;

  constructor(
    private readonly listen: HostPort,
    private readonly deps: AdminDeps,
    options: AdminOptions,
  ) {
    this.routes = new Map<string, Handler>([
      ["/metrics", (_target, _req, res) => this.metrics(res)],
      ["/healthz", (_target, _req, res) => sendJson(res, 200, { status: "ok" })],
      ["/readyz", (_target, _req, res) => this.readyz(res)],
      ["/connections", (target, req, res) => this.connections(target, req, res)],
    ]);
    this.refusals = new RefusalReport(deps.counters, deps.logger, options.maxConnections, CAP_LOG_INTERVAL_MS);
    this.cap = new ConnectionCap(options.maxConnections, ADMIN_CAP_GRACE_MS, this.refusals);
    this.server = createServer(
      {
        headersTimeout: ADMIN_TIMEOUTS.headersMs,
        requestTimeout: ADMIN_TIMEOUTS.requestMs,
        keepAliveTimeout: ADMIN_TIMEOUTS.keepAliveMs,
        connectionsCheckingInterval: ADMIN_TIMEOUTS.checkEveryMs,
      },
      (req, res) => this.handle(req, res),
    );
    this.server.setTimeout(ADMIN_TIMEOUTS.socketIdleMs);
    this.server.on("connection", (socket) => this.cap.admit(socket));
    this.server.on("error", (error) => deps.logger.error({ err: error }, "admin server error"));
  }

  /** Binds the admin address and logs `admin listening`. Rejects with an AdminListenError. */
  start(): Promise<AddressInfo> {
    const { host, port } = this.listen;
    return new Promise((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException): void => reject(new AdminListenError(formatHostPort(this.listen), error));
      this.server.once("error", onError);
      this.server.listen({ host, port }, () => {
        this.server.off("error", onError);
        const address = this.server.address() as AddressInfo;
        this.deps.logger.info({ address: address.address, port: address.port }, "admin listening");
        resolve(address);
      });
    });
  }

  /** The bound address, once started. */
  address(): AddressInfo | undefined {
    const address = this.server.address();
    return address && typeof address === "object" ? address : undefined;
  }

  /**
   * Stops accepting, lets requests in flight finish for up to CLOSE_GRACE_MS
   * and drops idle keep-alive connections at once (a scraper's idle
   * connection must not hold the process). Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= new Promise((resolve) => {
      if (!this.server.listening) {
        resolve();
        return;
      }
      const force = setTimeout(() => this.server.closeAllConnections(), CLOSE_GRACE_MS);
      this.server.close(() => {
        clearTimeout(force);
        this.refusals.close();
        resolve();
      });
      this.server.closeIdleConnections();
    });
    return this.closing;
  }

  /**
   * The edge of every request: whatever a route throws, synchronously or
   * not, ends here as a 500 and an error line, never as an exception that
   * would end the process and every session with it.
   */
  private handle(req: IncomingMessage, res: ServerResponse): void {
    res.once("close", this.cap.requestStarted(req.socket));
    const path = req.url;
    Promise.resolve()
      .then(() => this.route(req, res))
      .catch((error: unknown) => {
        this.deps.logger.error({ err: error, path }, "admin request failed");
        if (!res.headersSent) sendJson(res, 500, { error: "internal error; see the proxy's log" });
        else res.destroy();
      });
  }

  private route(req: IncomingMessage, res: ServerResponse): Promise<void> | void {
    const target = parseRequestTarget(req.url);
    if (typeof target === "string") {
      sendJson(res, 400, { error: target });
      return;
    }
    const route = this.routes.get(target.pathname);
    if (route === undefined) {
      sendJson(res, 404, { error: `no such endpoint ${target.pathname}; try /metrics, /healthz, /readyz or /connections` });
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("Allow", "GET, HEAD");
      sendJson(res, 405, { error: `${req.method ?? "this method"} is not allowed; use GET` });
      return;
    }
    return route(target, req, res);
  }

  private async metrics(res: ServerResponse): Promise<void> {
    const body = await this.deps.registry.metrics();
    send(res, 200, this.deps.registry.contentType, body);
  }

  private readyz(res: ServerResponse): void {
    const state = readiness(this.deps.source);
    sendJson(res, state.ready ? 200 : 503, state);
  }

  /**
   * Streams the listing as it is read, slice by slice (see listConnections),
   * waiting for a slow reader between slices rather than buffering the whole
   * answer, and stopping as soon as the client goes away.
   */
  private async connections(target: RequestTarget, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const limit = parseLimit(target.query.get("limit"));
    if (typeof limit === "string") {
      sendJson(res, 400, { error: limit });
      return;
    }
    const listener = target.query.get("listener") ?? undefined;
    res.writeHead(200, { "Content-Type": JSON_TYPE, "Cache-Control": "no-store" });
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    let gone = false;
    res.once("close", () => {
      gone = true;
    });
    const started = performance.now();
    const pieces = this.deps.listConnections?.({ limit, listener }) ?? listConnections(this.deps.source, { limit, listener }, this.slices);
    for (;;) {
      const piece = await pieces.next();
      // Abandoned, not closed: nothing in the listing holds a resource.
      if (gone) return;
      if (piece.done === true) {
        res.end();
        this.deps.logger.debug({ summary: piece.value, limit, durationMs: Math.round(performance.now() - started) }, "connections listed");
        return;
      }
      if (!res.write(piece.value)) await drainedOrClosed(res);
    }
  }
}

/** Resolves when `res` can take more, or has closed. */
function drainedOrClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, JSON_TYPE, `${JSON.stringify(body)}\n`);
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, {
    "Content-Type": contentType,
    "Content-Length": Buffer.byteLength(body),
    // Every answer is the state now; a cached one would be wrong.
    "Cache-Control": "no-store",
  });
  res.end(body);
}
