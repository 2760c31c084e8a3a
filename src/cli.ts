#!/usr/bin/env node
import { existsSync, readFileSync } from "node:fs";
import { availableParallelism, constants } from "node:os";
import type { Logger } from "pino";
import type { Argv } from "yargs";
import { joinDashValues } from "./cli/argv.js";
import type { Override } from "./config/load.js";
import type { Config } from "./config/schema.js";
import type { DiscoverFlags } from "./commands/discover.js";
import type { KeepaliveProxy } from "./lifecycle/keepalive-proxy.js";
import { requireLinux } from "./cli/platform.js";
import { errorText, reloadConfig } from "./cli/reload.js";
import { type HandledSignal, SignalRelay, type StopSignal } from "./cli/signals.js";
import { ExitCode } from "./commands/exit-codes.js";
import { ConfigError, formatProblem } from "./config/errors.js";
import { StartupError } from "./errors.js";

/**
 * The command line: the only module that reads argv and the environment,
 * installs signal handlers or calls process.exit.
 *
 * Its static imports are the few small modules needed to take over the
 * signals; everything else (yargs, zod, pino, koffi, the proxy: about 0.4 s
 * to load) is imported once the signals are ours, so a SIGHUP or SIGTERM in
 * that time is queued and honoured once the proxy is up instead of killing it.
 */

// Before anything else: from here on no handled signal has its default action.
// (Module-level because this is the program's entry: nothing imports it.)
const signals = SignalRelay.install(process, () => process.exit(ExitCode.Ok));

/** The heavy modules, loaded after the signals are taken over. */
const modules = await Promise.all([
  import("yargs"),
  import("yargs/helpers"),
  import("./cli/flags.js"),
  import("./cli/discover-flags.js"),
  import("./commands/check.js"),
  import("./commands/discover.js"),
  import("./config/load.js"),
  import("./log/logger.js"),
  import("./main.js"),
  import("./workers/supervisor.js"),
  import("./net/libc.js"),
  import("./net/malloc-tuning.js"),
  import("./net/descriptor-limit.js"),
])
  .then(([yargs, helpers, flags, discoverFlags, check, discover, load, log, main, supervisor, libc, malloc, descriptors]) => ({
    yargs: yargs.default,
    hideBin: helpers.hideBin,
    ...flags,
    ...discoverFlags,
    ...check,
    ...discover,
    ...load,
    ...log,
    ...main,
    ...supervisor,
    ...libc,
    ...malloc,
    ...descriptors,
  }))
  .catch(internalError);

/** A bug, or a module that cannot load: exit 70 with what is known. */
function internalError(error: unknown): never {
  process.stderr.write(`keepalive-proxy: internal error, please report it: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(ExitCode.InternalError);
}

const DEFAULT_CONFIG = "config/keepalive-proxy.yaml";
const SINGLE_FLAGS = ["listen", "upstream", "name"];

interface Args {
  readonly [flag: string]: unknown;
  readonly config?: string;
  readonly connect?: boolean;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

/** Flags given on the command line or in the environment, each with its source for error messages. */
function overridesFrom(args: Args, env: NodeJS.ProcessEnv): Override[] {
  const overrides: Override[] = [];
  for (const flag of [...Object.keys(modules.proxyFlags()), ...SINGLE_FLAGS]) {
    if (flag === "config") continue;
    const value = args[flag];
    if (value !== undefined) overrides.push({ flag, value, source: `--${flag}` });
    else if (env[modules.envName(flag)] !== undefined) overrides.push({ flag, value: env[modules.envName(flag)], source: modules.envName(flag) });
  }
  return overrides;
}

/** Which file to read: --config, else the default file unless flags describe the listener. */
function configFile(args: Args, overrides: readonly Override[], env: NodeJS.ProcessEnv): string | undefined {
  const { envName } = modules;
  if (args.config !== undefined) return args.config;
  if (env[envName("config")]) return env[envName("config")];
  if (overrides.some((o) => o.flag === "listen" || o.flag === "upstream")) return undefined;
  if (existsSync(DEFAULT_CONFIG)) return DEFAULT_CONFIG;
  throw new ConfigError([
    {
      path: "",
      message: `no config: ${DEFAULT_CONFIG} does not exist here; pass --config FILE, or --listen HOST:PORT --upstream HOST:PORT (or ${envName("listen")} and ${envName("upstream")})`,
    },
  ]);
}

/**
 * The effective config from the file, the environment and the flags. The
 * environment is read here rather than by yargs so that unrelated variables
 * sharing the prefix (Kubernetes service links such as
 * KEEPALIVE_PROXY_SERVICE_HOST) are ignored instead of rejected.
 */
function loadFromArgs(args: Args): Config {
  const overrides = overridesFrom(args, process.env);
  return modules.loadConfig({ file: configFile(args, overrides, process.env), overrides });
}

/** One line for one problem; a heading and one line each for several. */
function reportConfigError(error: ConfigError): void {
  const heading = `keepalive-proxy: invalid config${error.file ? ` (${error.file})` : ""}:`;
  const [only, ...more] = error.problems;
  if (only && more.length === 0) {
    process.stderr.write(`${heading} ${formatProblem(only)}\n`);
    return;
  }
  process.stderr.write(`${heading}\n`);
  for (const problem of error.problems) process.stderr.write(`  ${formatProblem(problem)}\n`);
}

/** What the signals act on: a single-process proxy, or the supervisor of several workers. */
type RunningProxy = Pick<KeepaliveProxy, "shutdown" | "sessionTotal" | "currentConfig" | "requestReload">;

/** `workers: auto` is one per CPU this process may use (cgroup and affinity limits included). */
function workerCount(config: Config): number {
  return config.workers === "auto" ? availableParallelism() : config.workers;
}

async function run(args: Args): Promise<void> {
  const config = loadFromArgs(args);
  requireLinux(process.platform);
  const workers = workerCount(config);
  const logger = modules.createLogger({ level: config.log.level, format: config.log.format, ...(workers > 1 ? { worker: "supervisor" as const } : {}) });
  let proxy: RunningProxy;
  try {
    if (workers > 1) {
      const libc = modules.loadLibc();
      // The process tree's descriptor limit: the workers inherit it.
      modules.checkDescriptorBudget(libc, config, logger);
      const supervisor = new modules.Supervisor(config, { logger, libc, workers });
      await supervisor.start();
      proxy = supervisor;
    } else {
      // A process-wide allocator setting, so it belongs to the program, not to startProxy (workers set their own).
      const tuned = modules.tuneMallocForForwarding(modules.loadLibc());
      logger.debug({ tuned }, "malloc tuned for forwarding");
      proxy = await modules.startProxy(config, { logger });
    }
  } catch (error) {
    if (error instanceof StartupError) {
      logger.fatal({ code: error.code }, error.message);
      process.stderr.write(`keepalive-proxy: ${error.message}\n`);
      await modules.flushLogger(logger);
      process.exit(ExitCode.StartupFailed);
    }
    throw error;
  }
  signals.attach(proxyActions(proxy, logger, () => loadFromArgs(args)));
}

/** What each signal does to a running proxy. */
function proxyActions(proxy: RunningProxy, logger: Logger, load: () => Config): Parameters<SignalRelay["attach"]>[0] {
  let stopping = false;
  const exitAfter = (shutdown: Promise<unknown>): void => {
    shutdown
      .then(() => modules.flushLogger(logger))
      .then(
        () => process.exit(ExitCode.Ok),
        (error: unknown) => {
          logger.error({ err: errorText(error) }, "shutdown failed; exiting");
          process.exit(ExitCode.InternalError);
        },
      );
  };
  return {
    stop(signal: StopSignal, duringStartup: boolean) {
      if (stopping) {
        logger.warn({ signal }, "second signal during drain; resetting all sessions now");
        exitAfter(proxy.shutdown(0));
        return;
      }
      stopping = true;
      logger.info({ signal, duringStartup, liveSessions: proxy.sessionTotal, drainTimeoutMs: proxy.currentConfig.shutdown.drainTimeout }, "shutting down");
      exitAfter(proxy.shutdown().then(({ drained, reset }) => logger.info({ drained, reset }, "stopped")));
    },
    reload(duringStartup: boolean) {
      // The proxy refuses (and counts) a reload once its drain has begun.
      if (duringStartup) logger.info({ signal: "SIGHUP" }, "SIGHUP arrived during startup; reloading now");
      void reloadConfig(proxy, load);
    },
    ignore(signal: "SIGUSR1" | "SIGUSR2", duringStartup: boolean) {
      const why = signal === "SIGUSR1" ? "the Node inspector is never opened by a signal" : "SIGUSR2 has no meaning to keepalive-proxy";
      logger.info({ signal, duringStartup }, `${signal} ignored: ${why}`);
    },
    failed(signal: HandledSignal, error: unknown) {
      logger.error({ signal, err: errorText(error) }, "signal handler failed; the proxy keeps running");
    },
  };
}

async function check(args: Args): Promise<ExitCode> {
  const config = loadFromArgs(args);
  requireLinux(process.platform);
  return modules.checkConfig(config, { connect: args.connect === true, libc: modules.loadLibc(), print: (line) => process.stdout.write(`${line}\n`) });
}

/** `discover`: the config is read only for --listener, and then only the file (no flag overrides it). */
async function discover(args: Args): Promise<ExitCode> {
  const config = args.listener === undefined ? undefined : modules.loadConfig({ file: args.config ?? DEFAULT_CONFIG, overrides: [] });
  requireLinux(process.platform);
  return modules.discoverCommand(args as DiscoverFlags, config, {
    libc: modules.loadLibc(),
    print: (line) => process.stdout.write(`${line}\n`),
    error: (line) => process.stderr.write(`${line}\n`),
    // \r and erase-line redraw one line in place; only a terminal understands them.
    progress: process.stdout.isTTY ? (line) => process.stdout.write(`\r\x1b[2K${line ?? ""}`) : undefined,
  });
}

/** `check` has nothing to drain or reload: a stop signal or a hangup ends it as the default action would. */
const checkActions: Parameters<SignalRelay["attach"]>[0] = {
  stop: (signal) => process.exit(128 + constants.signals[signal]),
  reload: () => process.exit(128 + constants.signals.SIGHUP),
  ignore: () => {},
  failed: () => {},
};

function buildParser(argv: string[]): Argv {
  const { envName, ENV_PREFIX } = modules;
  return (
    modules
      .yargs(argv)
      .scriptName("keepalive-proxy")
      .usage(
        [
          "keepalive-proxy: a TCP proxy that keeps idle connections alive and resets both legs when a peer dies.",
          "",
          "Usage:",
          "  $0 [options]                 run the proxy",
          "  $0 check [--connect]         validate the config and print the effective socket options",
          "  $0 discover --upstream H:P   measure how long the path keeps an idle flow; recommend the keepalive idle",
        ].join("\n"),
      )
      .command("$0", "Run the proxy (default command)")
      .command("check", "Validate the config, print the effective config and each leg's socket options", (y) =>
        y.option("connect", { type: "boolean", desc: "Also open one connection to each upstream and read the options back from the kernel" }),
      )
      .command("discover", "Measure how long the path to an upstream keeps an idle flow (keepalive probes only) and recommend the keepalive idle", (y) =>
        y.options(modules.discoverFlags()),
      )
      .options(modules.proxyFlags())
      // A flag given twice takes the last value, as in most Unix tools.
      .parserConfiguration({ "duplicate-arguments-array": false })
      .epilogue(
        [
          "Examples:",
          "  In front of a database; a dead peer is found ~90 s after the last byte (idle 60s + 3 × 10s):",
          "    keepalive-proxy --listen 0.0.0.0:6432 --upstream db.internal:5432",
          "  Behind a NAT that forgets idle flows after 5 minutes: probe well before it forgets:",
          "    keepalive-proxy --listen :6432 --upstream db:5432 --upstream-keepalive-idle 240s",
          "  Find a dead peer within 30 s, idle or with data in flight (15s + 3 × 5s = user timeout 30s):",
          "    keepalive-proxy --listen :6432 --upstream db:5432 --keepalive-idle 15s --keepalive-interval 5s --keepalive-count 3",
          "  Several listeners from a file (SIGHUP reloads it):",
          "    keepalive-proxy --config /etc/keepalive-proxy/keepalive-proxy.yaml",
          "  Before a deploy: validate, show each leg's socket options, prove each upstream reachable:",
          "    keepalive-proxy check --config prod.yaml --connect",
          "  Before choosing the keepalive idle: how long does the path to the upstream keep an idle flow? (up to 30 min)",
          "    keepalive-proxy discover --upstream db.internal:5432",
          "",
          `Precedence: defaults < config file < environment (${ENV_PREFIX}_<FLAG>, e.g. ${envName("keepalive-idle")}=30s) < flags.`,
          "Durations: 500ms, 30s, 5m, 2h; a bare number is seconds; at most 24d (what a timer holds).",
          "Signals: SIGTERM/SIGINT drain then stop; SIGHUP reloads the config file; SIGUSR1 and SIGUSR2 are ignored (no inspector).",
          "Exit codes: 0 ok; 1 cannot start (address in use, option refused, not Linux); 2 invalid config or usage; 3 check --connect or discover: upstream unreachable; 70 internal error.",
        ].join("\n"),
      )
      .version(version())
      .help()
      .alias("h", "help")
      .strict()
      .wrap(Math.min(120, process.stdout.columns ?? 100))
      .fail((message, error) => {
        if (error) throw error;
        process.stderr.write(`keepalive-proxy: ${message}\nRun keepalive-proxy --help for usage.\n`);
        process.exit(ExitCode.InvalidConfig);
      })
  );
}

/** Flags that take a value, so a value that starts with a dash is still theirs. */
function valueFlags(): Set<string> {
  const all = { ...modules.proxyFlags(), ...modules.discoverFlags() };
  return new Set(Object.entries(all).flatMap(([name, spec]) => (spec.type === "string" ? [name] : [])));
}

async function main(): Promise<void> {
  const argv = joinDashValues(modules.hideBin(process.argv), valueFlags());
  const args = (await buildParser(argv).parseAsync()) as unknown as Args & { _: (string | number)[] };
  const command = args._[0];
  try {
    if (command === "check") {
      signals.attach(checkActions);
      process.exit(await check(args));
    } else if (command === "discover") {
      signals.attach(checkActions);
      process.exit(await discover(args));
    } else if (command === undefined) await run(args);
    else {
      process.stderr.write(`keepalive-proxy: unknown command "${command}"; run keepalive-proxy --help\n`);
      process.exit(ExitCode.InvalidConfig);
    }
  } catch (error) {
    if (error instanceof ConfigError) {
      reportConfigError(error);
      process.exit(ExitCode.InvalidConfig);
    }
    if (error instanceof StartupError) {
      process.stderr.write(`keepalive-proxy: ${error.message}\n`);
      process.exit(ExitCode.StartupFailed);
    }
    throw error;
  }
}

main().catch(internalError);
