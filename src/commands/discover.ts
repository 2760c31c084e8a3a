import { listenerSettings } from "../config/settings.js";
import type { Config } from "../config/schema.js";
import { DEFAULT_MAX_S, defaultLadder, DiscoverFlagError, parseLadder, parseMax } from "../discover/ladder.js";
import { formatReport, progressLine, type ReportHeader, reportJson } from "../discover/report.js";
import { DEFAULT_PROBE_TIMING } from "../discover/rung.js";
import { type DiscoverPlan, discover, type PendingRung } from "../discover/run.js";
import { verdictOf } from "../discover/verdict.js";
import type { Libc } from "../net/libc.js";
import { SocketOptions } from "../net/socket-options.js";
import { parseHostPort } from "../util/host-port.js";
import { ExitCode } from "./exit-codes.js";

/** The flags of `discover` as the command line gave them, unparsed. */
export interface DiscoverFlags {
  readonly upstream?: string | undefined;
  readonly max?: string | undefined;
  readonly ladder?: string | undefined;
  readonly json?: boolean | undefined;
  readonly listener?: string | undefined;
}

/** Where the command writes, and what it runs on. */
export interface DiscoverIo {
  readonly libc: Libc;
  /** One line of the report, to stdout. */
  readonly print: (line: string) => void;
  /** One line of a usage error, to stderr. */
  readonly error: (line: string) => void;
  /** Redraws the progress line; given only when stdout is a terminal. Undefined clears it. */
  readonly progress?: ((line: string | undefined) => void) | undefined;
}

/** The proxy's default upstream connect timeout (schema: upstream.connectTimeout), used with --upstream. */
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** How often the progress line is redrawn. */
const PROGRESS_EVERY_MS = 1_000;

/**
 * `keepalive-proxy discover`: measures how long the path to an upstream keeps
 * an idle flow, with keepalive probes alone, and recommends the keepalive
 * idle. Exit codes: 0 measured, 2 bad flags, 3 upstream unreachable (any
 * address, or a name that does not resolve).
 */
export async function discoverCommand(flags: DiscoverFlags, config: Config | undefined, io: DiscoverIo): Promise<ExitCode> {
  let setup: Setup;
  try {
    setup = planFrom(flags, config);
  } catch (error) {
    if (!(error instanceof DiscoverFlagError)) throw error;
    io.error(`keepalive-proxy discover: ${error.message}`);
    return ExitCode.InvalidConfig;
  }
  const { plan, header, configured } = setup;
  const startedAt = performance.now();
  let pending: readonly PendingRung[] = [];
  const draw = (): void => io.progress?.(progressLine(pending, startedAt, performance.now(), plan.probe));
  const timer = io.progress === undefined ? undefined : setInterval(draw, PROGRESS_EVERY_MS);
  let report: Awaited<ReturnType<typeof discover>>;
  try {
    report = await discover(plan, {
      socketOptions: new SocketOptions(io.libc),
      onPending: (p) => {
        pending = p;
      },
    });
  } finally {
    clearInterval(timer);
    io.progress?.(undefined);
  }
  const reachable = report.addresses.some((a) => a.reachable);
  const verdict = verdictOf(
    report.addresses.flatMap((a) => a.rungs),
    reachable,
    configured,
  );
  if (flags.json === true) io.print(JSON.stringify(reportJson(header, report, verdict), null, 2));
  else for (const line of formatReport(header, report, verdict)) io.print(line);
  const anyUnreachable = report.unresolved.length > 0 || report.addresses.some((a) => !a.reachable) || report.addresses.length === 0;
  return anyUnreachable ? ExitCode.UpstreamUnreachable : ExitCode.Ok;
}

interface Setup {
  readonly plan: DiscoverPlan;
  readonly header: ReportHeader;
  readonly configured: { name: string; idleS: number } | undefined;
}

/** Checks the flags together and builds the plan; throws DiscoverFlagError naming the flag at fault. */
function planFrom(flags: DiscoverFlags, config: Config | undefined): Setup {
  if ((flags.upstream === undefined) === (flags.listener === undefined)) {
    throw new DiscoverFlagError("give either --upstream HOST:PORT or --listener NAME (with --config FILE)");
  }
  if (flags.ladder !== undefined && flags.max !== undefined) {
    throw new DiscoverFlagError("give --ladder or --max, not both: --max only shapes the default ladder");
  }
  const ladderS = flags.ladder !== undefined ? parseLadder(flags.ladder) : defaultLadder(flags.max !== undefined ? parseMax(flags.max) : DEFAULT_MAX_S);
  const probe = DEFAULT_PROBE_TIMING;
  if (flags.upstream !== undefined) {
    const target = parseHostPort(flags.upstream, { allowPortZero: false });
    if (typeof target === "string") throw new DiscoverFlagError(`--upstream: ${target}`);
    const plan = { upstreams: [target], ladderS, refine: true, connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS, probe };
    return { plan, header: { target: flags.upstream, ladderS, refine: true, probe }, configured: undefined };
  }
  const listener = config?.listeners.find((l) => l.name === flags.listener);
  if (listener === undefined) {
    const names = config?.listeners.map((l) => l.name).join(", ") ?? "none";
    throw new DiscoverFlagError(`--listener: no listener named "${flags.listener}" in the config (listeners: ${names})`);
  }
  const settings = listenerSettings(listener);
  const plan = { upstreams: settings.upstream.targets, ladderS, refine: true, connectTimeoutMs: settings.upstream.connectTimeoutMs, probe };
  const configured = settings.upstreamLeg.keepalive ? { name: listener.name, idleS: Math.round(settings.upstreamLeg.keepaliveIdleMs / 1000) } : undefined;
  return { plan, header: { target: `listener ${listener.name}`, ladderS, refine: true, probe }, configured };
}
