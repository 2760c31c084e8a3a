// The upstream servers of the fault-injection soak, run in a network namespace
// as `ip netns exec NS node soak-upstreams.mjs SPEC_JSON`. SPEC_JSON is
// {"servers": [{"name", "kind", "host"}, ...]} with kinds:
//   echo    echoes every byte; a FIN is answered with a FIN once the echo is written
//   slow    the same, but waits a random answerDelayMs (min..max) after accept
//           before it reads or answers a byte: an upstream that is slow to answer
//   reset   echoes until it has read a random resetAfterBytes (min..max) bytes,
//           then resets the connection (RST) mid-stream
//   refuse  binds a port and closes it again: nothing listens there, a SYN gets a RST
// Prints {"ev":"listening","name","port"} per server, then {"ev":"ready"}.
// The command "stats" on stdin prints {"ev":"stats","servers":{name: counts}}.
// Exits when stdin closes, so it never outlives the harness. Plain JS so it
// runs with no build or loader.

import net from "node:net";
import readline from "node:readline";

const spec = JSON.parse(process.argv[2] ?? "{}");
/** @type {Record<string, {accepted: number, resets: number, delayed: number, delayMsTotal: number, errors: number, bytesEchoed: number}>} */
const stats = {};
const sockets = new Set();
/** Idle upstream sockets of a vanished-and-restored host would otherwise linger; the soak's sessions are far shorter. */
const STALE_SOCKET_MS = 60_000;

function emit(ev, fields = {}) {
  process.stdout.write(`${JSON.stringify({ ev, t: Date.now(), ...fields })}\n`);
}

function between([min, max]) {
  return min + Math.floor(Math.random() * (max - min + 1));
}

/** Echo with backpressure: a FIN is answered with a FIN after the last echoed byte. */
function echo(socket, counts, onData) {
  socket.on("data", (chunk) => {
    counts.bytesEchoed += chunk.length;
    if (onData?.(chunk) === false) return;
    if (!socket.write(chunk)) socket.pause();
  });
  socket.on("drain", () => socket.resume());
  socket.on("end", () => socket.end());
}

function serve(server, socket) {
  const counts = stats[server.name];
  counts.accepted += 1;
  sockets.add(socket);
  socket.on("error", () => {
    counts.errors += 1;
  });
  socket.on("close", () => sockets.delete(socket));
  socket.setTimeout(STALE_SOCKET_MS, () => socket.destroy());
  switch (server.kind) {
    case "echo":
      echo(socket, counts);
      break;
    case "slow": {
      const delay = between(server.answerDelayMs ?? [200, 1500]);
      counts.delayed += 1;
      counts.delayMsTotal += delay;
      socket.pause();
      setTimeout(() => {
        if (socket.destroyed) return;
        echo(socket, counts);
        socket.resume();
      }, delay);
      break;
    }
    case "reset": {
      const limit = between(server.resetAfterBytes ?? [1024, 65536]);
      let seen = 0;
      echo(socket, counts, (chunk) => {
        seen += chunk.length;
        if (seen < limit) return true;
        counts.resets += 1;
        socket.resetAndDestroy();
        return false;
      });
      break;
    }
    default:
      throw new Error(`unknown server kind ${server.kind}`);
  }
}

async function start(server) {
  stats[server.name] = { accepted: 0, resets: 0, delayed: 0, delayMsTotal: 0, errors: 0, bytesEchoed: 0 };
  const listener = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, (socket) => serve(server, socket));
  await new Promise((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(0, server.host, resolve);
  });
  const { port } = listener.address();
  if (server.kind === "refuse") await new Promise((resolve) => listener.close(resolve));
  emit("listening", { name: server.name, kind: server.kind, port });
}

for (const server of spec.servers ?? []) await start(server);

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "stats") emit("stats", { servers: stats });
});
process.stdin.on("end", () => {
  for (const s of sockets) s.destroy();
  process.exit(0);
});
emit("ready", { pid: process.pid });
