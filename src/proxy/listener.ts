import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import type { Logger } from "pino";
import type { LegOptions, SocketOptions } from "../net/socket-options.js";
import { formatHostPort, type HostPort, unmapIPv4 } from "../util/host-port.js";
import type { AccessList } from "./access-list.js";
import { CloseReason } from "./close-reason.js";
import type { ConnectionBudget } from "./connection-budget.js";
import { ListenError } from "./errors.js";
import type { ProxyHooks, SessionSummary } from "./hooks.js";
import { readProxyHeader } from "./proxy-header-reader.js";
import { encodeProxyHeader, type Endpoint, type ProxyProtocolVersion } from "./proxy-protocol.js";
import { formatAddress, Session, type SessionOwner } from "./session.js";
import { UpstreamPool, type UpstreamPolicy } from "./upstream-pool.js";

/** Everything one listener needs; a reload swaps it for new sessions only. */
export interface ListenerSettings {
  readonly name: string;
  readonly listen: HostPort;
  readonly upstream: UpstreamPolicy;
  /** 0 = off (the default: legacy sessions idle for hours). */
  readonly idleTimeoutMs: number;
  /** 0 = off. */
  readonly maxSessionDurationMs: number;
  /** 0 = no limit. */
  readonly maxConnections: number;
  readonly access: AccessList;
  readonly sendProxyProtocol: ProxyProtocolVersion | undefined;
  readonly acceptProxyProtocol:
    | { readonly accept: ProxyProtocolVersion | "any"; readonly trusted: AccessList; readonly headerTimeoutMs: number }
    | undefined;
  readonly client: LegOptions;
  readonly upstreamLeg: LegOptions;
}

/** What a listener shares with the rest of the proxy. */
export interface ListenerDeps {
  readonly socketOptions: SocketOptions;
  readonly hooks: ProxyHooks;
  readonly logger: Logger;
  readonly nextSessionId: () => string;
  /** The process-wide connection limit, shared by all listeners. */
  readonly processBudget: ConnectionBudget;
  /** Makes a per-listener budget (a seam for tests). */
  readonly makeBudget: (max: number) => ConnectionBudget;
}

// The connection-limit slots a session holds (Session.slots bits).
const LISTENER_SLOT = 1;
const PROCESS_SLOT = 2;

// A denied address is logged at most once a minute; the map is cleared when it grows past this.
const DENIED_LOG_INTERVAL_MS = 60_000;
const DENIED_LOG_MAX_ENTRIES = 10_000;

/**
 * One listening socket and the sessions it accepted. Accepted clients are
 * paused until their upstream is connected, so nothing is read that could not
 * be forwarded.
 */
export class ProxyListener implements SessionOwner {
  readonly sessions = new Set<Session>();
  private readonly server: Server;
  private accepting = false;
  private pool: UpstreamPool;
  private readonly budget: ConnectionBudget;
  private readonly deniedLoggedAt = new Map<string, number>();

  constructor(
    private settings: ListenerSettings,
    private readonly deps: ListenerDeps,
  ) {
    this.pool = new UpstreamPool(settings.upstream);
    this.budget = deps.makeBudget(settings.maxConnections);
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.accept(socket));
    this.server.on("error", (error) => deps.logger.error({ err: error, listener: settings.name }, "listener error"));
  }

  get name(): string {
    return this.settings.name;
  }

  /** The settings new sessions get. */
  get current(): ListenerSettings {
    return this.settings;
  }

  /** The upstream pool (health and cool-downs), for observers. */
  get upstreams(): UpstreamPool {
    return this.pool;
  }

  /** Whether the socket is bound and accepting. */
  get isAccepting(): boolean {
    return this.accepting;
  }

  /** Binds the listen address. Rejects with a ListenError that names the address and the fix. */
  start(): Promise<AddressInfo> {
    const { host, port } = this.settings.listen;
    return new Promise((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException): void => {
        reject(new ListenError(this.settings.name, formatHostPort(this.settings.listen), error));
      };
      this.server.once("error", onError);
      this.server.listen({ host, port, backlog: 1024 }, () => {
        this.server.off("error", onError);
        this.applyClientOptions(this.settings.client);
        this.accepting = true;
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** The bound address, once started. */
  address(): AddressInfo | undefined {
    const address = this.server.address();
    return address && typeof address === "object" ? address : undefined;
  }

  /** New sessions use these settings; live sessions keep theirs. Listen address changes need a new listener. */
  update(settings: ListenerSettings): void {
    if (!samePolicy(this.settings.upstream, settings.upstream)) this.pool = new UpstreamPool(settings.upstream);
    // Sockets accepted from now on inherit the new client-leg options; live ones keep theirs.
    this.applyClientOptions(settings.client);
    this.budget.max = settings.maxConnections;
    this.settings = settings;
  }

  /**
   * Stops accepting at once; live sessions continue. The listening socket is
   * closed synchronously; server.close's callback is not awaited because it
   * waits for every accepted connection, which would tie reloads and drains
   * to the longest session.
   */
  stopAccepting(): void {
    this.accepting = false;
    if (this.server.listening) this.server.close();
  }

  /** Called by a session when both of its sockets have closed. */
  sessionClosed(session: Session, summary: SessionSummary): void {
    this.sessions.delete(session);
    if (session.slots & PROCESS_SLOT) this.deps.processBudget.release();
    if (session.slots & LISTENER_SLOT) this.budget.release();
    this.deps.hooks.sessionClosed?.(summary);
  }

  /**
   * Gives the listening socket the client leg's options, which Linux copies
   * to every accepted socket. The startup check has already proven the kernel
   * takes them, so a refusal here is unexpected and logged as an error.
   */
  private applyClientOptions(options: LegOptions): void {
    const failures = this.deps.socketOptions.applyToListener(this.server, options);
    if (failures.length > 0) this.deps.logger.error({ listener: this.settings.name, failures }, "listening socket refused client-leg options");
  }

  /** Resets every live session with the given reason. */
  abortAll(reason: CloseReason): void {
    for (const session of this.sessions) session.abort(reason);
  }

  private accept(client: Socket): void {
    const settings = this.settings;
    const session = new Session(
      this.deps.nextSessionId(),
      client,
      { listener: settings.name, client: settings.client, upstream: settings.upstreamLeg, idleTimeoutMs: settings.idleTimeoutMs },
      this.deps.socketOptions,
      this,
      this.deps.logger,
    );
    const withinListener = this.budget.tryAcquire();
    const withinProcess = withinListener && this.deps.processBudget.tryAcquire();
    session.slots = (withinListener ? LISTENER_SLOT : 0) | (withinProcess ? PROCESS_SLOT : 0);
    this.sessions.add(session);
    this.deps.hooks.clientAccepted?.(settings.name);

    if (!withinProcess) {
      session.abort(CloseReason.ProxyConnectionLimit);
      return;
    }
    const remote = client.remoteAddress ?? "";
    const pp = settings.acceptProxyProtocol;
    if (pp && !pp.trusted.permits(remote)) {
      session.abort(CloseReason.ClientProxyUntrusted);
      return;
    }
    if (!pp && !this.admit(session, remote)) return;
    session.begin(settings.maxSessionDurationMs);
    if (!pp) {
      this.connect(session, settings, undefined);
      return;
    }
    void readProxyHeader(client, pp.accept, pp.headerTimeoutMs).then((result) => {
      if (!session.open) return;
      if (!result.ok) {
        this.deps.logger.debug({ sessionId: session.id, client: session.clientAddress, why: result.why }, "PROXY header refused");
        session.abort(result.cause === "timeout" ? CloseReason.ClientProxyHeaderTimeout : CloseReason.ClientProxyHeaderInvalid);
        return;
      }
      const origin = result.header.source;
      if (origin) session.setClientOrigin(formatAddress(origin.address, origin.port));
      if (!this.admit(session, origin?.address ?? remote)) return;
      this.connect(session, settings, origin && result.header.destination ? [origin, result.header.destination] : undefined);
    });
  }

  /** Applies the access list to the client's (original) address; a denied client is reset. */
  private admit(session: Session, address: string): boolean {
    if (this.settings.access.permits(address)) return true;
    const now = Date.now();
    const last = this.deniedLoggedAt.get(address) ?? 0;
    if (now - last >= DENIED_LOG_INTERVAL_MS) {
      if (this.deniedLoggedAt.size >= DENIED_LOG_MAX_ENTRIES) this.deniedLoggedAt.clear();
      this.deniedLoggedAt.set(address, now);
      this.deps.logger.warn({ listener: this.settings.name, client: address }, "client denied by access list (logged once a minute per address)");
    }
    session.abort(CloseReason.ClientDenied);
    return false;
  }

  /** Connects the upstream (with failover) and hands it to the session. */
  private connect(session: Session, settings: ListenerSettings, origin: readonly [Endpoint, Endpoint] | undefined): void {
    const client = session.client;
    const pending = this.pool.connect((result, durationMs, errno, address) => {
      this.deps.hooks.upstreamConnected?.(settings.name, result, durationMs, errno);
      if (result !== "ok") {
        this.deps.logger.warn({ listener: settings.name, upstream: address, result, errno }, "upstream unreachable");
      }
    });
    const cancel = (): void => pending.cancel();
    client.once("close", cancel);
    void pending.done.then((outcome) => {
      client.off("close", cancel);
      if (outcome.ok) {
        const header = settings.sendProxyProtocol ? encodeProxyHeader(settings.sendProxyProtocol, ...(origin ?? endpointsOf(client))) : undefined;
        session.attachUpstream(outcome.socket, outcome.address, header);
        return;
      }
      if (!session.open) return; // the client left first; its own reason stands
      const reason = outcome.result === "timeout" ? CloseReason.UpstreamConnectTimeout : CloseReason.UpstreamConnectFailed;
      session.failConnect(reason, outcome.errno, outcome.address);
    });
  }
}

/** The client's address and the address it connected to, for a PROXY header. */
function endpointsOf(client: Socket): [Endpoint, Endpoint] {
  return [
    { address: unmapIPv4(client.remoteAddress ?? ""), port: client.remotePort ?? 0 },
    { address: unmapIPv4(client.localAddress ?? ""), port: client.localPort ?? 0 },
  ];
}

function samePolicy(a: UpstreamPolicy, b: UpstreamPolicy): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
