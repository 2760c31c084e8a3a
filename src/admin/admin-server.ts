import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { promisify } from "node:util";
import { gzip } from "node:zlib";
import type { Logger } from "pino";
import { StartupError, StartupErrorCode } from "../errors.js";
import { formatHostPort, type HostPort } from "../util/host-port.js";
import { type AdminAuth, isLoopbackHost } from "./admin-auth.js";
import { ConnectionCap } from "./connection-cap.js";
import { type ConnectionsSource, listConnections, parseLimit } from "./connections.js";
import { readiness, type ReadinessSource } from "./readiness.js";
import { type AdminConnectionCounters, RefusalReport } from "./refusal-report.js";
import { parseRequestTarget, type RequestTarget } from "./request-target.js";
import { SliceScheduler } from "./slice-scheduler.js";
import { DEFAULT_STATUS_LIMIT, type StatusSource, statusReport } from "./status.js";
import { PAGE_HEADERS, STATUS_CSS, STATUS_JS, renderLoginPage, renderStatusPage } from "./status-page.js";

/** Everything the admin endpoints read; KeepaliveProxy fits it as it is. */
export interface AdminSource extends ReadinessSource, ConnectionsSource, StatusSource {}

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
  /** The /status.json body, in pieces, when the sessions live elsewhere (the supervisor merges its workers'). */
  readonly listStatus?: (options: { readonly limit: number; readonly listener: string | undefined }) => AsyncGenerator<string, unknown>;
  /** The token check (admin.auth.tokenFile); none: every endpoint is open. */
  readonly auth?: AdminAuth | undefined;
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
const gzipAsync = promisify(gzip);
/**
 * zlib level for /status.json and the page: the JSON repeats its field names
 * per session, so even level 1 takes it to about a tenth, and costs a few ms
 * per MB, on libuv's thread pool rather than the event loop.
 */
const GZIP_LEVEL = 1;

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
      ["/status.json", (target, req, res) => this.status(target, req, res)],
      ["/", (target, req, res) => this.page(target, req, res)],
      ["/status.js", (_target, _req, res) => send(res, 200, "text/javascript; charset=utf-8", STATUS_JS, PAGE_HEADERS)],
      ["/status.css", (_target, _req, res) => send(res, 200, "text/css; charset=utf-8", STATUS_CSS, PAGE_HEADERS)],
      // Browsers ask for it unbidden; an empty answer keeps a 404 out of the page's console.
      ["/favicon.ico", (_target, _req, res) => send(res, 204, "image/x-icon", "", PAGE_HEADERS)],
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
        this.deps.logger.info({ address: address.address, port: address.port, auth: this.deps.auth === undefined ? "none" : "token" }, "admin listening");
        if (this.deps.auth === undefined && !isLoopbackHost(address.address)) {
          this.deps.logger.warn(
            { address: address.address, port: address.port },
            "the admin server listens beyond loopback without a token: anyone who reaches it sees client addresses; set admin.auth.tokenFile (--admin-token-file)",
          );
        }
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
      sendJson(res, 404, { error: `no such endpoint ${target.pathname}; try /, /status.json, /metrics, /healthz, /readyz or /connections` });
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("Allow", "GET, HEAD");
      sendJson(res, 405, { error: `${req.method ?? "this method"} is not allowed; use GET` });
      return;
    }
    if (this.deps.auth?.protects(target.pathname) && !this.deps.auth.permits(req.headers.authorization)) {
      this.unauthorized(target, req, res);
      return;
    }
    return route(target, req, res);
  }

  /**
   * 401 with a Bearer challenge. The page answers with a small form instead
   * of JSON: a browser cannot send the header on navigation, so the page's
   * script asks for the token once and sends it with each /status.json.
   */
  private unauthorized(target: RequestTarget, req: IncomingMessage, res: ServerResponse): void {
    const why = req.headers.authorization === undefined ? "this endpoint needs Authorization: Bearer <token>" : "the token is not the admin token";
    const challenge = { "WWW-Authenticate": 'Bearer realm="keepalive-proxy"' };
    if (target.pathname === "/") send(res, 401, "text/html; charset=utf-8", renderLoginPage(), { ...PAGE_HEADERS, ...challenge });
    else send(res, 401, JSON_TYPE, `${JSON.stringify({ error: why })}\n`, challenge);
  }

  /** The status page: a full snapshot rendered on the server (readable without JavaScript), then kept live by its script. */
  private async page(target: RequestTarget, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const options = statusOptions(target);
    if (typeof options === "string") {
      sendJson(res, 400, { error: options });
      return;
    }
    if (req.method === "HEAD") {
      send(res, 200, "text/html; charset=utf-8", "", PAGE_HEADERS);
      return;
    }
    const text = await collect(this.statusPieces(options));
    await sendMaybeGzipped(req, res, "text/html; charset=utf-8", renderStatusPage(JSON.parse(text)), PAGE_HEADERS);
  }

  private statusPieces(options: { readonly limit: number; readonly listener: string | undefined }): AsyncGenerator<string, unknown> {
    return this.deps.listStatus?.(options) ?? statusReport(this.deps.source, options, this.slices);
  }

  /** /status.json: streamed like /connections. */
  private async status(target: RequestTarget, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const options = statusOptions(target);
    if (typeof options === "string") {
      sendJson(res, 400, { error: options });
      return;
    }
    // The page polls this every 2 s: compressed when the client takes gzip (a browser always does),
    // which means collecting it first; it is bounded by `limit` all the same.
    if (req.method === "GET" && acceptsGzip(req)) {
      await sendMaybeGzipped(req, res, JSON_TYPE, await collect(this.statusPieces(options)), { "X-Content-Type-Options": "nosniff" });
      return;
    }
    await this.stream(req, res, this.statusPieces(options), "status listed");
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
    const pieces = this.deps.listConnections?.({ limit, listener }) ?? listConnections(this.deps.source, { limit, listener }, this.slices);
    await this.stream(req, res, pieces, "connections listed");
  }

  /** Writes `pieces` as they come, waiting for a slow reader; stops when the client goes away. */
  private async stream(req: IncomingMessage, res: ServerResponse, pieces: AsyncGenerator<string, unknown>, done: string): Promise<void> {
    res.writeHead(200, { "Content-Type": JSON_TYPE, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff" });
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    let gone = false;
    res.once("close", () => {
      gone = true;
    });
    const started = performance.now();
    for (;;) {
      const piece = await pieces.next();
      // Abandoned, not closed: nothing in the listing holds a resource.
      if (gone) return;
      if (piece.done === true) {
        res.end();
        this.deps.logger.debug({ summary: piece.value, durationMs: Math.round(performance.now() - started) }, done);
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

function send(res: ServerResponse, status: number, contentType: string, body: string, extra: Readonly<Record<string, string>> = {}): void {
  res.writeHead(status, {
    "Content-Type": contentType,
    "Content-Length": Buffer.byteLength(body),
    // Every answer is the state now; a cached one would be wrong.
    "Cache-Control": "no-store",
    ...extra,
  });
  res.end(body);
}

/** The query of / and /status.json: `limit` (default DEFAULT_STATUS_LIMIT) and `listener`; or a message for a 400. */
function statusOptions(target: RequestTarget): { readonly limit: number; readonly listener: string | undefined } | string {
  const text = target.query.get("limit");
  const limit = text === null ? DEFAULT_STATUS_LIMIT : parseLimit(text);
  if (typeof limit === "string") return limit;
  return { limit, listener: target.query.get("listener") ?? undefined };
}

function acceptsGzip(req: IncomingMessage): boolean {
  return /\bgzip\b/i.test(req.headers["accept-encoding"] ?? "");
}

/** Sends `body`, gzipped (off the event loop) when the client accepts it. */
async function sendMaybeGzipped(req: IncomingMessage, res: ServerResponse, contentType: string, body: string, extra: Readonly<Record<string, string>>): Promise<void> {
  if (!acceptsGzip(req)) {
    send(res, 200, contentType, body, { ...extra, Vary: "Accept-Encoding" });
    return;
  }
  const zipped = await gzipAsync(body, { level: GZIP_LEVEL });
  if (res.destroyed) return;
  res.writeHead(200, {
    "Content-Type": contentType,
    "Content-Length": zipped.length,
    "Content-Encoding": "gzip",
    Vary: "Accept-Encoding",
    "Cache-Control": "no-store",
    ...extra,
  });
  res.end(zipped);
}

async function collect(pieces: AsyncGenerator<string, unknown>): Promise<string> {
  const parts: string[] = [];
  for (let p = await pieces.next(); p.done !== true; p = await pieces.next()) parts.push(p.value);
  return parts.join("");
}
