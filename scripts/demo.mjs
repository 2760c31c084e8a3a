// `npm run demo`: shows keepalive-proxy forwarding on loopback with the
// shipped config. It starts a small line service on 127.0.0.1:7001 (a stand-in
// for a legacy upstream), runs the proxy on 127.0.0.1:7000 in front of it, and
// opens a client session through the proxy every 2 s. Watch the proxy's
// `session closed` lines report bytes each way. Ctrl-C stops everything.
//
// Options (flag or environment variable; 0 lets the kernel choose a free port,
// as the test suite does):
//   --rounds N            stop after N sessions
//   --port N              proxy listener     KEEPALIVE_DEMO_PORT           (default 7000)
//   --upstream-port N     line service       KEEPALIVE_DEMO_UPSTREAM_PORT  (default 7001)
//   --admin-port N        admin server       KEEPALIVE_DEMO_ADMIN_PORT     (default 9464)
// With other ports than the shipped config's, they are given to the proxy as
// --listen/--upstream/--admin (the listener then has the default settings,
// which the shipped config's equal).
//
// It cleans up however it ends: Ctrl-C, SIGTERM, SIGHUP (a closed terminal or
// SSH session signals the whole process group; to the proxy alone a SIGHUP is
// a reload), a closed stdout (`npm run demo | head -3`), or an exception. Each
// stops the proxy and waits for it, and closes the line service, so no process
// and no bound port is left. (SIGKILL cannot be caught: then the proxy stays.)
import { spawn } from "node:child_process";
import { connect, createServer } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const DEFAULTS = { port: 7000, upstreamPort: 7001, adminPort: 9464 };
const root = fileURLToPath(new URL("..", import.meta.url));
const rounds = option("rounds", undefined, Number.POSITIVE_INFINITY);
const ports = {
  port: option("port", "KEEPALIVE_DEMO_PORT", DEFAULTS.port),
  upstreamPort: option("upstream-port", "KEEPALIVE_DEMO_UPSTREAM_PORT", DEFAULTS.upstreamPort),
  adminPort: option("admin-port", "KEEPALIVE_DEMO_ADMIN_PORT", DEFAULTS.adminPort),
};

/** A whole-number option from `--name N`, else the environment, else the default. */
function option(name, variable, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  const text = at > 0 ? process.argv[at + 1] : variable ? process.env[variable] : undefined;
  if (text === undefined || text === "") return fallback;
  if (!/^\d+$/.test(text)) {
    process.stderr.write(`demo: --${name}${variable ? ` (${variable})` : ""} takes a whole number, not "${text}"\n`);
    process.exit(2);
  }
  return Number(text);
}

// Every way out goes through stop(): it must be callable from the first line on.
const sockets = new Set();
let proxy;
let upstream;
let stdoutOpen = true;
let stopping = false;

/** Ends the demo: sessions and the line service closed, the proxy stopped and waited for, then exit. */
function stop(code) {
  if (stopping) return;
  stopping = true;
  for (const socket of sockets) socket.destroy();
  upstream?.close();
  if (!proxy || proxy.exitCode !== null || proxy.signalCode !== null) process.exit(code);
  // The demo's own sessions are closed above, so the proxy's drain ends at once;
  // the SIGKILL is for a proxy that is stuck.
  const kill = setTimeout(() => proxy.kill("SIGKILL"), 10_000);
  proxy.once("exit", () => {
    clearTimeout(kill);
    process.exit(code);
  });
  proxy.kill("SIGTERM");
}

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => stop(0));
process.on("uncaughtException", (error) => {
  process.stderr.write(`demo: ${error.stack ?? error}\n`);
  stop(1);
});
process.on("unhandledRejection", (error) => {
  process.stderr.write(`demo: ${error?.stack ?? error}\n`);
  stop(1);
});
// A closed stdout (`| head`, a terminal gone): nobody is watching any more.
process.stdout.on("error", () => {
  stdoutOpen = false;
  stop(0);
});

/** A line on stdout, while someone reads it. */
function say(line) {
  if (stdoutOpen) process.stdout.write(`${line}\n`);
}

upstream = createServer((socket) => {
  sockets.add(socket);
  socket.on("close", () => sockets.delete(socket));
  createInterface({ input: socket }).on("line", (line) => socket.write(`${line.toUpperCase()}\n`));
  socket.on("error", () => {});
});
await new Promise((resolve, reject) => upstream.once("error", reject).listen(ports.upstreamPort, "127.0.0.1", resolve));
const upstreamPort = upstream.address().port;
say(`demo: upstream line service on 127.0.0.1:${upstreamPort} (answers each line in capitals)`);

const args = ["dist/cli.js", "--config", "config/keepalive-proxy.yaml", "--log-format", "pretty"];
if (ports.port !== DEFAULTS.port || upstreamPort !== DEFAULTS.upstreamPort) {
  args.push("--listen", `127.0.0.1:${ports.port}`, "--upstream", `127.0.0.1:${upstreamPort}`, "--name", "demo");
}
if (ports.adminPort !== DEFAULTS.adminPort) args.push("--admin", `127.0.0.1:${ports.adminPort}`);
proxy = spawn(process.execPath, args, { cwd: root, stdio: ["ignore", "pipe", "inherit"] });

let proxyPort;
createInterface({ input: proxy.stdout }).on("line", (line) => {
  say(`proxy | ${line}`);
  const port = /\blistening \{.*"port":(\d+)/.exec(line);
  if (proxyPort === undefined && port && !line.includes("admin listening")) {
    proxyPort = Number(port[1]);
    void clientLoop();
  }
});
proxy.on("exit", (code) => {
  if (stopping) return;
  process.stderr.write(`demo: the proxy exited (${code ?? "signal"}); stopping\n`);
  stop(code ?? 1);
});

async function clientLoop() {
  for (let round = 1; round <= rounds && !stopping; round++) {
    await oneSession(round);
    if (round < rounds) await new Promise((r) => setTimeout(r, 2000));
  }
  stop(0);
}

function oneSession(round) {
  return new Promise((resolve) => {
    const socket = connect(proxyPort, "127.0.0.1", () => socket.write(`hello through the proxy, round ${round}\n`));
    sockets.add(socket);
    createInterface({ input: socket }).once("line", (reply) => {
      say(`client | sent round ${round}, got back: ${reply}`);
      socket.end();
    });
    socket.on("close", () => {
      sockets.delete(socket);
      resolve();
    });
    socket.on("error", (error) => {
      process.stderr.write(`client | ${error.message}\n`);
    });
  });
}
