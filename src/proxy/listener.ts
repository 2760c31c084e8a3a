import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { TLSSocket } from "node:tls";
import type { Logger } from "pino";
import { nearDescriptorLimit } from "../net/descriptor-headroom.js";
import type { Libc } from "../net/libc.js";
import type { SharedBufferForwarding } from "../net/direct-forwarding.js";
import { listenIp, openReusePort } from "../net/reuse-port.js";
import type { LegOptions, OptionFailure, SocketOptions } from "../net/socket-options.js";
import { LogThrottle } from "../util/log-throttle.js";
import { formatHostPort, type HostPort, unmapIPv4 } from "../util/host-port.js";
import type { AccessList } from "./admission/access-list.js";
import { CloseReason } from "./session/close-reason.js";
import type { SessionSlots } from "./admission/connection-budget.js";
import { ListenError } from "../errors.js";
import type { AcceptErrno, ConnectResult, OptionSide, ProxyHooks, SessionSummary } from "./hooks.js";
import { readProxyHeader } from "./admission/proxy-header-reader.js";
import { encodeProxyHeader, type Endpoint, type ProxyProtocolVersion } from "./admission/proxy-protocol.js";
import { formatAddress, Session, type SessionOwner } from "./session/session.js";
import { type ConnectOutcome, releaseConnected } from "./upstream/upstream-connector.js";
import { type SecureStep, UpstreamPool, type UpstreamPolicy } from "./upstream/upstream-pool.js";
import type { ClientTlsSettings, UpstreamTlsSettings } from "../tls/material.js";
import { ClientTlsGate } from "../tls/listener-tls.js";

/** Everything one listener needs; a reload swaps it for new sessions only. */
export interface ListenerSettings {
  readonly name: string;
  readonly listen: HostPort;
  readonly upstream: UpstreamPolicy;
  /** 0 = off (the default: legacy sessions idle for hours). */
  readonly idleTimeoutMs: number;
  /** 0 = off. */
  readonly maxSessionDurationMs: number;
  /** After one side's FIN, reset when no byte moves the other way for this long; 0 = off. */
  readonly halfCloseTimeoutMs: number;
  /** 0 = no limit. */
  readonly maxConnections: number;
  readonly access: AccessList;
  readonly sendProxyProtocol: ProxyProtocolVersion | undefined;
  readonly acceptProxyProtocol:
    | { readonly accept: ProxyProtocolVersion | "any"; readonly trusted: AccessList; readonly headerTimeoutMs: number }
    | undefined;
  readonly client: LegOptions;
  readonly upstreamLeg: LegOptions;
  /** TLS termination on the client leg; undefined = plaintext. */
  readonly clientTls?: ClientTlsSettings | undefined;
  /** TLS origination on the upstream leg; undefined = plaintext. */
  readonly upstreamTls?: UpstreamTlsSettings | undefined;
}

/** What a listener shares with the rest of the proxy. */
export interface ListenerDeps {
  readonly socketOptions: SocketOptions;
  readonly hooks: ProxyHooks;
  readonly logger: Logger;
  readonly nextSessionId: () => string;
  /** The process-wide connection limit, shared by all listeners. */
  readonly processBudget: SessionSlots;
  /** Makes a listener's budget: local, or leased from the supervisor in a worker. */
  readonly makeBudget: (listener: string, max: number) => SessionSlots;
  /** The process's soft RLIMIT_NOFILE, when known: clients beyond it are reset rather than half-served. */
  readonly descriptorLimit: number | undefined;
  /** In a worker process: listen on a SO_REUSEPORT socket of its own, beside the other workers'. */
  readonly reusePort?: SharedListen | undefined;
  /** Forwarding through one shared read buffer (plain TCP legs); undefined: through Node's streams. */
  readonly directForwarding?: SharedBufferForwarding | undefined;
}

/** How a worker binds its share of a listen address. */
export interface SharedListen {
  readonly libc: Libc;
  /** The port the supervisor reserved for a listener configured with port 0, so every worker binds the same one. */
  reservedPort(listener: string): number | undefined;
}

/** Connections the kernel queues per listening socket before accept. */
const BACKLOG = 1024;

// The connection-limit slots a session holds (Session.slots bits).
const LISTENER_SLOT = 1;
const PROCESS_SLOT = 2;

// How often each kind of repeated warning may be logged.
const DENIED_LOG_INTERVAL_MS = 60_000;
const RESOURCES_LOG_INTERVAL_MS = 1_000;
const OPTION_LOG_INTERVAL_MS = 60_000;

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
  /** Shared with the listener this one replaced, so maxConnections holds across reloads. */
  readonly budget: SessionSlots;
  private readonly deniedLog = new LogThrottle(DENIED_LOG_INTERVAL_MS);
  private readonly resourcesLog = new LogThrottle(RESOURCES_LOG_INTERVAL_MS);
  private readonly optionLog = new LogThrottle(OPTION_LOG_INTERVAL_MS);
  /** TLS on either leg (src/tls): the client's handshake before any upstream connect, the upstream's after it. */
  private readonly tls = new ClientTlsGate();
  private readonly prepareUpstream = (socket: Socket): void => {
    const failures = this.deps.socketOptions.apply(socket, this.settings.upstreamLeg);
    if (failures.length > 0) this.optionsRefused("upstream", failures);
  };

  /** `budget`: the connection budget of the listener this one replaces, if any. */
  constructor(
    private settings: ListenerSettings,
    private readonly deps: ListenerDeps,
    budget?: SessionSlots,
  ) {
    this.pool = new UpstreamPool(settings.upstream);
    this.budget = budget ?? deps.makeBudget(settings.name, settings.maxConnections);
    this.budget.max = settings.maxConnections;
    this.reportTls(settings);
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.accept(socket));
    // Errors while binding are start()'s to report (one line); later ones are accept errors.
    this.server.on("error", (error: NodeJS.ErrnoException) => {
      if (this.accepting) this.acceptFailed(error.code, "accept");
    });
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
  async start(): Promise<AddressInfo> {
    const options = this.deps.reusePort === undefined ? { host: this.settings.listen.host, port: this.settings.listen.port } : { fd: await this.openShared(this.deps.reusePort) };
    return new Promise((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException): void => {
        reject(new ListenError(this.settings.name, formatHostPort(this.settings.listen), error));
      };
      this.server.once("error", onError);
      this.server.listen({ ...options, backlog: BACKLOG }, () => {
        this.server.off("error", onError);
        this.applyClientOptions(this.settings.client);
        this.accepting = true;
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** A SO_REUSEPORT socket of this worker's on the listen address (the reserved port for port 0). */
  private async openShared(shared: SharedListen): Promise<number> {
    const { host, port } = this.settings.listen;
    const fail = (code: string): ListenError =>
      new ListenError(this.settings.name, formatHostPort(this.settings.listen), Object.assign(new Error(code), { code }));
    let ip: string;
    try {
      ip = await listenIp(host);
    } catch (error) {
      throw fail((error as NodeJS.ErrnoException).code ?? "ENOTFOUND");
    }
    const socket = openReusePort(shared.libc, ip, port === 0 ? (shared.reservedPort(this.settings.name) ?? 0) : port, BACKLOG);
    if ("errno" in socket) throw fail(socket.errno);
    return socket.fd;
  }

  /** The bound address, once started. */
  address(): AddressInfo | undefined {
    const address = this.server.address();
    return address && typeof address === "object" ? address : undefined;
  }

  /**
   * New sessions use these settings; live sessions keep theirs. A new name on
   * the same address keeps the listening socket (nothing queued is dropped);
   * other listen address changes need a new listener.
   */
  update(settings: ListenerSettings): void {
    if (!samePolicy(this.settings.upstream, settings.upstream)) this.pool = new UpstreamPool(settings.upstream);
    // Sockets accepted from now on inherit the new client-leg options; live ones keep theirs.
    this.applyClientOptions(settings.client);
    this.budget.max = settings.maxConnections;
    this.settings = settings;
    this.reportTls(settings);
  }

  /** Tells the metrics when the certificates this listener now serves expire. */
  private reportTls(settings: ListenerSettings): void {
    if (settings.clientTls) this.deps.hooks.tlsCertificate?.(settings.name, "client", settings.clientTls.expiresAt);
    if (settings.upstreamTls?.expiresAt !== undefined) this.deps.hooks.tlsCertificate?.(settings.name, "upstream", settings.upstreamTls.expiresAt);
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

  /** Binds again after stopAccepting (a reload that had to free the port and then failed). */
  async restart(): Promise<void> {
    if (this.server.listening) return;
    await this.start();
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
    if (failures.length > 0) this.optionsRefused("client", failures);
  }

  /** Counts every refused option, and warns at most once a minute per option. */
  private optionsRefused(side: OptionSide, failures: readonly OptionFailure[]): void {
    for (const f of failures) {
      this.deps.hooks.socketOptionFailed?.(this.settings.name, side, f.option);
      if (this.optionLog.allow(`${side}/${f.option}`)) {
        this.deps.logger.warn(
          { listener: this.settings.name, side, option: f.option, value: f.value, errno: f.errno },
          "the kernel refused a socket option (logged once a minute per option)",
        );
      }
    }
  }

  /**
   * The proxy could not serve a client for its own lack of descriptors,
   * buffers or memory: counted, warned at most once a second, never blamed on
   * the upstream.
   */
  private acceptFailed(code: string | undefined, during: "accept" | "connect"): void {
    const errno = acceptErrno(code);
    this.deps.hooks.acceptFailed?.(this.settings.name, errno);
    if (this.resourcesLog.allow(errno)) {
      this.deps.logger.warn(
        { listener: this.settings.name, errno: code ?? errno, during, liveSessions: this.sessions.size },
        "out of descriptors or buffers: resetting clients until some are free (raise LimitNOFILE / ulimit -n; logged once a second)",
      );
    }
  }

  /** Resets every live session with the given reason. */
  abortAll(reason: CloseReason): void {
    for (const session of this.sessions) session.abort(reason);
  }

  private accept(raw: Socket): void {
    const settings = this.settings;
    const client = settings.clientTls ? this.tls.wrap(raw, settings.clientTls) : raw;
    const session = new Session(
      this.deps.nextSessionId(),
      client,
      settings,
      this.deps.socketOptions,
      this,
      this.deps.logger,
      this.deps.directForwarding,
    );
    this.sessions.add(session);
    this.deps.hooks.clientAccepted?.(settings.name);
    if (settings.clientTls) this.tls.watch(session, settings.name, settings.clientTls, this.deps.hooks);
    // A client that reset between the handshake and this callback has no
    // address left: nothing can be judged about it, and it is simply gone.
    const remote = client.remoteAddress;
    if (remote === undefined) {
      session.abort(CloseReason.ClientReset);
      return;
    }
    if (nearDescriptorLimit(client, this.deps.descriptorLimit)) {
      this.acceptFailed("EMFILE", "accept");
      session.abort(CloseReason.ProxyResourcesExhausted, "EMFILE");
      return;
    }
    const withinListener = this.budget.tryAcquire();
    const withinProcess = withinListener && this.deps.processBudget.tryAcquire();
    session.slots = (withinListener ? LISTENER_SLOT : 0) | (withinProcess ? PROCESS_SLOT : 0);
    if (withinProcess) {
      this.admitted(session, remote, settings);
      return;
    }
    if (this.budget.acquire === undefined && this.deps.processBudget.acquire === undefined) {
      session.abort(CloseReason.ProxyConnectionLimit);
      return;
    }
    // A budget shared with other workers may lease more slots: the client waits (paused) for the answer.
    void this.acquireShared(session, withinListener).then((ok) => {
      if (!session.open) return;
      if (ok) this.admitted(session, remote, settings);
      else session.abort(CloseReason.ProxyConnectionLimit);
    });
  }

  /** Takes the slots a session still lacks from shared budgets; the session's `slots` say what it holds. */
  private async acquireShared(session: Session, haveListenerSlot: boolean): Promise<boolean> {
    if (!haveListenerSlot) {
      if (!(await (this.budget.acquire?.() ?? Promise.resolve(false)))) return false;
      session.slots |= LISTENER_SLOT;
      if (!session.open) this.budget.release();
    }
    if (!session.open) return false;
    if (!this.deps.processBudget.tryAcquire() && !(await (this.deps.processBudget.acquire?.() ?? Promise.resolve(false)))) return false;
    session.slots |= PROCESS_SLOT;
    if (!session.open) this.deps.processBudget.release();
    return session.open;
  }

  /** A client within every limit: PROXY header, access list, then the upstream. */
  private admitted(session: Session, remote: string, settings: ListenerSettings): void {
    const client = session.client;
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
    void readProxyHeader(client, pp.accept, pp.headerTimeoutMs, session.signal).then((result) => {
      if (!session.open || (!result.ok && result.cause === "cancelled")) return;
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
    if (this.deniedLog.allow(address)) {
      this.deps.logger.warn({ listener: this.settings.name, client: address }, "client denied by access list (logged once a minute per address)");
    }
    session.abort(CloseReason.ClientDenied);
    return false;
  }

  /**
   * Connects the upstream (with failover) and hands it to the session. The
   * client is read meanwhile, so a client that resets is seen at once and the
   * connect is abandoned through the session's signal. Callbacks rather than
   * an async function: this runs for every session, and each await costs a
   * promise and a microtask hop.
   */
  private connect(session: Session, settings: ListenerSettings, origin: readonly [Endpoint, Endpoint] | undefined): void {
    // A client whose TLS handshake fails never causes an upstream connect.
    if (settings.clientTls) {
      void this.tls.handshaken(session).then((ok) => {
        if (ok) this.connectUpstream(session, settings, origin);
      });
      return;
    }
    this.connectUpstream(session, settings, origin);
  }

  private connectUpstream(session: Session, settings: ListenerSettings, origin: readonly [Endpoint, Endpoint] | undefined): void {
    session.watchWhileConnecting();
    const header = settings.sendProxyProtocol ? encodeProxyHeader(settings.sendProxyProtocol, ...(origin ?? endpointsOf(session.client))) : undefined;
    const secure: SecureStep | undefined =
      settings.upstreamTls === undefined
        ? undefined
        : (connected, done) => {
            // A PROXY header goes in cleartext before the ClientHello, as HAProxy's `send-proxy` with `ssl` sends it.
            if (header) connected.socket.write(header);
            this.tls.originate(session, settings, connected, this.deps.hooks, done);
          };
    this.pool.start(
      {
        signal: session.signal,
        prepare: this.prepareUpstream,
        onAttempt: (result, durationMs, errno, address) => this.attempted(settings.name, result, durationMs, errno, address),
        // With TLS an attempt counts once its handshake succeeds: a failed one tries the next address.
        secure,
      },
      (outcome) => this.upstreamSettled(session, outcome, secure === undefined ? header : undefined),
    );
  }

  /** The upstream connect (and TLS handshake, if any) ended: pair the socket with the client, or end the session. */
  private upstreamSettled(session: Session, outcome: ConnectOutcome, header: Buffer | undefined): void {
    if (!outcome.ok) {
      this.connectFailed(session, outcome);
      return;
    }
    session.attachUpstream(outcome.socket, outcome.address, header);
    // The session's own error listener is on it now (a TLS socket's handshake listener stays, and is harmless).
    if (!(outcome.socket instanceof TLSSocket)) releaseConnected(outcome.socket);
    if (session.open) this.deps.hooks.sessionOpened?.(session);
  }

  private attempted(listener: string, result: ConnectResult, durationMs: number, errno: string | undefined, address: string | undefined): void {
    this.deps.hooks.upstreamConnected?.(listener, result, durationMs, errno);
    if (result !== "ok" && result !== "cancelled") this.deps.logger.warn({ listener, upstream: address, result, errno }, "upstream unreachable");
  }

  private connectFailed(session: Session, outcome: Extract<ConnectOutcome, { ok: false }>): void {
    if (!session.open || outcome.result === "cancelled") return; // the session ended first; its own reason stands
    if (outcome.result === "local") {
      this.acceptFailed(outcome.errno, "connect");
      session.abort(CloseReason.ProxyResourcesExhausted, outcome.errno);
      return;
    }
    if (outcome.result === "handshake") {
      session.failConnect(CloseReason.UpstreamTlsHandshakeFailed, outcome.errno, outcome.address);
      return;
    }
    const reason = outcome.result === "timeout" ? CloseReason.UpstreamConnectTimeout : CloseReason.UpstreamConnectFailed;
    session.failConnect(reason, outcome.errno, outcome.address);
  }
}

/** The accept-errors label of an errno. */
function acceptErrno(code: string | undefined): AcceptErrno {
  return code === "EMFILE" || code === "ENFILE" || code === "ENOBUFS" || code === "ENOMEM" ? code : "other";
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
