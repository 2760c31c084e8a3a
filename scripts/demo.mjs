// `npm run demo`: shows keepalive-proxy forwarding on loopback with the
// shipped config. It starts a small line service on 127.0.0.1:7001 (a stand-in
// for a legacy upstream), runs the proxy on 127.0.0.1:7000 in front of it, and
// opens a client session through the proxy every 2 s. Watch the proxy's
// `session closed` lines report bytes each way. Ctrl-C stops everything.
// `--rounds N` stops after N sessions (used by the test suite).
import { spawn } from "node:child_process";
import { connect, createServer } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const roundsArg = process.argv.indexOf("--rounds");
const rounds = roundsArg > 0 ? Number(process.argv[roundsArg + 1]) : Number.POSITIVE_INFINITY;
const root = fileURLToPath(new URL("..", import.meta.url));

const upstream = createServer((socket) => {
  createInterface({ input: socket }).on("line", (line) => socket.write(`${line.toUpperCase()}\n`));
  socket.on("error", () => {});
});
await new Promise((resolve, reject) => upstream.once("error", reject).listen(7001, "127.0.0.1", resolve));
console.log("demo: upstream line service on 127.0.0.1:7001 (answers each line in capitals)");

const proxy = spawn(process.execPath, ["dist/cli.js", "--config", "config/keepalive-proxy.yaml", "--log-format", "pretty"], {
  cwd: root,
  stdio: ["ignore", "pipe", "inherit"],
});
let listening = false;
createInterface({ input: proxy.stdout }).on("line", (line) => {
  console.log(`proxy | ${line}`);
  if (!listening && line.includes("listening")) {
    listening = true;
    void clientLoop();
  }
});
proxy.on("exit", (code) => {
  upstream.close();
  if (code !== 0 && code !== null) {
    console.error(`demo: the proxy exited with ${code}`);
    process.exit(code);
  }
});

function stop() {
  if (proxy.exitCode !== null) process.exit(0);
  proxy.kill("SIGTERM");
  proxy.once("exit", () => process.exit(0));
}
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

async function clientLoop() {
  for (let round = 1; round <= rounds; round++) {
    await oneSession(round);
    if (round < rounds) await new Promise((r) => setTimeout(r, 2000));
  }
  stop();
}

function oneSession(round) {
  return new Promise((resolve) => {
    const socket = connect(7000, "127.0.0.1", () => socket.write(`hello through the proxy, round ${round}\n`));
    createInterface({ input: socket }).once("line", (reply) => {
      console.log(`client | sent round ${round}, got back: ${reply}`);
      socket.end();
    });
    socket.on("close", resolve);
    socket.on("error", (error) => {
      console.error(`client | ${error.message}`);
    });
  });
}
