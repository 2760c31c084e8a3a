import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import type { Logger } from "pino";
import type { LegOptions, SocketOptions } from "../net/socket-options.js";
import { formatHostPort, type HostPort } from "../util/host-port.js";
import { CloseReason } from "./close-reason.js";
import type { ProxyHooks } from "./hooks.js";
import { ListenError } from "./errors.js";
import { Session } from "./session.js";
import { connectUpstream } from "./upstream-connector.js";

/** Everything one listener needs; a reload swaps it for new sessions only. */
export interface ListenerSettings {
  readonly name: string;
  readonly listen: HostPort;
  readonly upstream: HostPort;
  readonly connectTimeoutMs: number;
  /** 0 = off (the default: legacy sessions idle for hours). */
  readonly idleTimeoutMs: number;
  readonly client: LegOptions;
  readonly upstreamLeg: LegOptions;
}

/** What a listener shares with the rest of the proxy. */
export interface ListenerDeps {
  readonly socketOptions: SocketOptions;
  readonly hooks: ProxyHooks;
  readonly logger: Logger;
  readonly nextSessionId: () => string;
}

/**
 * One listening socket and the sessions it accepted. Accepted clients are
 * paused until their upstream is connected, so nothing is read that could not
 * be forwarded.
 */
export class ProxyListener {
  readonly sessions = new Set<Session>();
  private readonly server: Server;
  private accepting = false;

  constructor(
    private settings: ListenerSettings,
    private readonly deps: ListenerDeps,
  ) {
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
      { sessionClosed: (summary) => {
          this.sessions.delete(session);
          this.deps.hooks.sessionClosed?.(summary);
        } },
      this.deps.logger,
    );
    this.sessions.add(session);
    this.deps.hooks.clientAccepted?.(settings.name);

    const pending = connectUpstream(settings.upstream, settings.connectTimeoutMs);
    const cancel = (): void => pending.cancel();
    client.once("close", cancel);
    void pending.done.then((outcome) => {
      client.off("close", cancel);
      if (outcome.ok) {
        this.deps.hooks.upstreamConnected?.(settings.name, "ok", outcome.durationMs, undefined);
        session.attachUpstream(outcome.socket, outcome.address);
        return;
      }
      if (!session.open) return; // the client left first; its own reason stands
      this.deps.hooks.upstreamConnected?.(settings.name, outcome.result, outcome.durationMs, outcome.errno);
      this.deps.logger.warn(
        { listener: settings.name, upstream: formatHostPort(settings.upstream), result: outcome.result, errno: outcome.errno },
        "upstream unreachable",
      );
      const reason = outcome.result === "timeout" ? CloseReason.UpstreamConnectTimeout : CloseReason.UpstreamConnectFailed;
      session.failConnect(reason, outcome.errno, outcome.address);
    });
  }
}
