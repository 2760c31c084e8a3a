#!/usr/bin/env node
import { existsSync, readFileSync } from "node:fs";
import type { Logger } from "pino";
import yargs, { type Argv } from "yargs";
import { hideBin } from "yargs/helpers";
import { envName, ENV_PREFIX, proxyFlags } from "./cli/flags.js";
import { discoverFlags } from "./cli/discover-flags.js";
import { checkConfig } from "./commands/check.js";
import { type DiscoverFlags, discoverCommand } from "./commands/discover.js";
import { ExitCode } from "./commands/exit-codes.js";
import { ConfigError, formatProblem } from "./config/errors.js";
import { loadConfig, type Override } from "./config/load.js";
import type { Config } from "./config/schema.js";
import { createLogger, flushLogger } from "./log/logger.js";
import { startProxy, type KeepaliveProxy } from "./main.js";
import { loadLibc } from "./net/libc.js";
import { tuneMallocForForwarding } from "./net/malloc-tuning.js";
import { StartupError } from "./proxy/errors.js";

/**
 * The command line: the only module that reads argv and the environment,
 * installs signal handlers or calls process.exit.
 */

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
  for (const flag of [...Object.keys(proxyFlags()), ...SINGLE_FLAGS]) {
    if (flag === "config") continue;
    const value = args[flag];
    if (value !== undefined) overrides.push({ flag, value, source: `--${flag}` });
    else if (env[envName(flag)] !== undefined) overrides.push({ flag, value: env[envName(flag)], source: envName(flag) });
  }
  return overrides;
}

/** Which file to read: --config, else the default file unless flags describe the listener. */
function configFile(args: Args, overrides: readonly Override[], env: NodeJS.ProcessEnv): string | undefined {
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
  return loadConfig({ file: configFile(args, overrides, process.env), overrides });
}

function reportConfigError(error: ConfigError): void {
  process.stderr.write(`keepalive-proxy: invalid config${error.file ? ` (${error.file})` : ""}:\n`);
  for (const problem of error.problems) process.stderr.write(`  ${formatProblem(problem)}\n`);
}

async function run(args: Args): Promise<void> {
  const config = loadFromArgs(args);
  const logger = createLogger({ level: config.log.level, format: config.log.format });
  // A process-wide allocator setting, so it belongs to the program, not to startProxy.
  const tuned = tuneMallocForForwarding(loadLibc());
  logger.debug({ tuned }, "malloc tuned for forwarding");
  let proxy: KeepaliveProxy;
  try {
    proxy = await startProxy(config, { logger });
  } catch (error) {
    if (error instanceof StartupError) {
      logger.fatal({ code: error.code }, error.message);
      process.stderr.write(`keepalive-proxy: ${error.message}\n`);
      await flushLogger(logger);
      process.exit(ExitCode.StartupFailed);
    }
    throw error;
  }
  installSignalHandlers(proxy, logger, () => loadFromArgs(args));
}

function installSignalHandlers(proxy: KeepaliveProxy, logger: Logger, reloadConfig: () => Config): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, "second signal during drain; resetting all sessions now");
      void proxy
        .shutdown(0)
        .then(() => flushLogger(logger))
        .then(() => process.exit(ExitCode.Ok));
      return;
    }
    stopping = true;
    logger.info({ signal, liveSessions: proxy.sessionTotal, drainTimeoutMs: proxy.currentConfig.shutdown.drainTimeout }, "shutting down");
    void proxy
      .shutdown()
      .then(({ drained, reset }) => {
        logger.info({ drained, reset }, "stopped");
        return flushLogger(logger);
      })
      .then(() => process.exit(ExitCode.Ok));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  // Serialised, refused during a drain, and never throws: see KeepaliveProxy.requestReload.
  process.on("SIGHUP", () => void proxy.requestReload(reloadConfig));
}

async function check(args: Args): Promise<ExitCode> {
  const config = loadFromArgs(args);
  return checkConfig(config, { connect: args.connect === true, libc: loadLibc(), print: (line) => process.stdout.write(`${line}\n`) });
}

/** `discover`: the config is read only for --listener, and then only the file (no flag overrides it). */
async function discover(args: Args): Promise<ExitCode> {
  const config = args.listener === undefined ? undefined : loadConfig({ file: args.config ?? DEFAULT_CONFIG, overrides: [] });
  return discoverCommand(args as DiscoverFlags, config, {
    libc: loadLibc(),
    print: (line) => process.stdout.write(`${line}\n`),
    error: (line) => process.stderr.write(`${line}\n`),
    // \r and erase-line redraw one line in place; only a terminal understands them.
    progress: process.stdout.isTTY ? (line) => process.stdout.write(`\r\x1b[2K${line ?? ""}`) : undefined,
  });
}

function buildParser(argv: string[]): Argv {
  return yargs(argv)
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
      y.options(discoverFlags()),
    )
    .options(proxyFlags())
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
        "Durations: 500ms, 30s, 5m, 2h; a bare number is seconds.",
        "Signals: SIGTERM/SIGINT drain then stop; SIGHUP reloads the config file.",
        "Exit codes: 0 ok; 1 cannot start (address in use, option refused); 2 invalid config or usage; 3 check --connect or discover: upstream unreachable; 70 internal error.",
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
    });
}

async function main(): Promise<void> {
  const argv = hideBin(process.argv);
  const args = (await buildParser(argv).parseAsync()) as unknown as Args & { _: (string | number)[] };
  const command = args._[0];
  try {
    if (command === "check") process.exit(await check(args));
    else if (command === "discover") process.exit(await discover(args));
    else if (command === undefined) await run(args);
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

main().catch((error: unknown) => {
  process.stderr.write(`keepalive-proxy: internal error, please report it: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(ExitCode.InternalError);
});
