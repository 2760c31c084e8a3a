import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { StartupError, StartupErrorCode } from "../proxy/errors.js";
import { formatHostPort, type HostPort } from "../util/host-port.js";
import { type ConnectionsSource, listConnections, parseLimit } from "./connections.js";
import { readiness, type ReadinessSource } from "./readiness.js";

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

type Handler = (url: URL, res: ServerResponse) => Promise<void> | void;

/** How long a request in flight at close may take to finish: a scrape takes milliseconds. */
const CLOSE_GRACE_MS = 1_000;

/**
 * The admin HTTP server, on its own address (loopback by default: /connections
 * shows client addresses). GET or HEAD:
 * - /metrics: the proxy's registry in Prometheus' text format;
 * - /healthz: 200 while the process runs, also while it drains;
 * - /readyz: 200 when every listener is bound and the proxy is not draining, else 503;
 * - /connections: every live session with both legs as the kernel reports them now.
 * Anything else is 404 (405 for other methods).
 */
export class AdminServer {
  private readonly server: Server;
  private readonly routes: ReadonlyMap<string, Handler>;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly listen: HostPort,
    private readonly deps: AdminDeps,
  ) {
    this.routes = new Map<string, Handler>([
      ["/metrics", (_url, res) => this.metrics(res)],
      ["/healthz", (_url, res) => sendJson(res, 200, { status: "ok" })],
      ["/readyz", (_url, res) => this.readyz(res)],
      ["/connections", (url, res) => this.connections(url, res)],
    ]);
    this.server = createServer((req, res) => this.handle(req, res));
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
        resolve();
      });
      this.server.closeIdleConnections();
    });
    return this.closing;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://admin.invalid");
    const route = this.routes.get(url.pathname);
    if (route === undefined) {
      sendJson(res, 404, { error: `no such endpoint ${url.pathname}; try /metrics, /healthz, /readyz or /connections` });
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("Allow", "GET, HEAD");
      sendJson(res, 405, { error: `${req.method ?? "this method"} is not allowed; use GET` });
      return;
    }
    Promise.resolve()
      .then(() => route(url, res))
      .catch((error: unknown) => {
        this.deps.logger.error({ err: error, path: url.pathname }, "admin request failed");
        if (!res.headersSent) sendJson(res, 500, { error: "internal error; see the proxy's log" });
        else res.destroy();
      });
  }

  private async metrics(res: ServerResponse): Promise<void> {
    const body = await this.deps.registry.metrics();
    send(res, 200, this.deps.registry.contentType, body);
  }

  private readyz(res: ServerResponse): void {
    const state = readiness(this.deps.source);
    sendJson(res, state.ready ? 200 : 503, state);
  }

  private connections(url: URL, res: ServerResponse): void {
    const limit = parseLimit(url.searchParams.get("limit"));
    if (typeof limit === "string") {
      sendJson(res, 400, { error: limit });
      return;
    }
    const listener = url.searchParams.get("listener") ?? undefined;
    sendJson(res, 200, listConnections(this.deps.source, { limit, listener }));
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, "application/json; charset=utf-8", `${JSON.stringify(body)}\n`);
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
