// A scriptable TCP endpoint for the netns tests, run as
// `ip netns exec NS node peer.mjs`. It takes commands as JSON lines on stdin
// and reports what its sockets see as JSON lines on stdout, each with `t`
// (Date.now() at the event), so the test process can time what happens in
// another namespace. Plain JS so it runs with no build or loader.
//
// Commands ({"cmd": ...}):
//   listen  {host, port, tls?}      -> listening {port}; then accepted {conn:"aN"} per client
//                                      (tls {cert, key}: a TLS server; accepted once its handshake is done)
//   connect {conn, host, port, tls?} -> connected {conn} (tls {ca, servername}: once the TLS handshake is done)
//   send    {conn, bytes | text}    -> sent {conn, bytes, total, sha256} once flushed to the kernel
//   stream  {conn, chunk?}          -> writes without end (as fast as the socket takes it)
//   stop-stream {conn}
//   end     {conn}                  -> finish {conn} once our FIN is queued after all data
//   pause / resume {conn}           -> stop / start reading
//   destroy {conn}                  -> close (FIN if possible); reset {conn} -> RST
// Socket events: data {conn, bytes, total}, end {conn, total, sha256} (FIN
// received), error {conn, code}, close {conn, hadError, received, sent, sha256Sent}.
// The process exits when stdin closes, so it never outlives the test.

import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import readline from "node:readline";

/** @type {Map<string, {socket: net.Socket, received: number, hash: import('node:crypto').Hash, sent: number, sentHash: import('node:crypto').Hash, streaming: boolean}>} */
const conns = new Map();
let accepted = 0;

function emit(ev, fields = {}) {
  // Writes to a pipe are synchronous on Linux, so lines keep their order.
  process.stdout.write(`${JSON.stringify({ ev, t: Date.now(), ...fields })}\n`);
}

function track(id, socket) {
  const st = {
    socket,
    received: 0,
    hash: createHash("sha256"),
    sent: 0,
    sentHash: createHash("sha256"),
    streaming: false,
  };
  conns.set(id, st);
  socket.on("data", (chunk) => {
    st.received += chunk.length;
    st.hash.update(chunk);
    emit("data", { conn: id, bytes: chunk.length, total: st.received });
  });
  socket.on("end", () => emit("end", { conn: id, total: st.received, sha256: st.hash.copy().digest("hex") }));
  socket.on("finish", () => emit("finish", { conn: id, sent: st.sent }));
  socket.on("error", (err) => emit("error", { conn: id, code: err.code ?? null, message: err.message }));
  socket.on("close", (hadError) =>
    emit("close", {
      conn: id,
      hadError,
      received: st.received,
      sent: st.sent,
      sha256Sent: st.sentHash.copy().digest("hex"),
    }),
  );
  return st;
}

function conn(id) {
  const st = conns.get(id);
  if (st === undefined) throw new Error(`no connection ${id}`);
  return st;
}

function write(st, buf, cb) {
  st.sent += buf.length;
  st.sentHash.update(buf);
  return st.socket.write(buf, cb);
}

function stream(id, chunkSize) {
  const st = conn(id);
  const chunk = randomBytes(chunkSize);
  st.streaming = true;
  const pump = () => {
    // A 64 KiB chunk is above the 16 KiB high-water mark, so write() returns
    // false at once and the loop yields to the event loop until 'drain'.
    while (st.streaming && !st.socket.destroyed && st.socket.writable) {
      if (!write(st, chunk)) {
        st.socket.once("drain", pump);
        return;
      }
    }
  };
  pump();
  emit("streaming", { conn: id });
}

const handlers = {
  listen({ host, port = 0, tls: tlsFiles }) {
    const options = { allowHalfOpen: true };
    const onConnection = (socket) => {
      const id = `a${++accepted}`;
      track(id, socket);
      emit("accepted", {
        conn: id,
        local: `${socket.localAddress}:${socket.localPort}`,
        remote: `${socket.remoteAddress}:${socket.remotePort}`,
      });
    };
    const server = tlsFiles
      ? tls.createServer({ ...options, cert: readFileSync(tlsFiles.cert), key: readFileSync(tlsFiles.key) }, onConnection)
      : net.createServer(options, onConnection);
    server.on("error", (err) => emit("server-error", { code: err.code ?? null, message: err.message }));
    server.listen(port, host, () => emit("listening", { port: server.address().port }));
  },
  connect({ conn: id, host, port, tls: tlsOptions }) {
    if (conns.has(id)) throw new Error(`connection ${id} exists`);
    const socket = tlsOptions
      ? tls.connect({ host, port, allowHalfOpen: true, ca: readFileSync(tlsOptions.ca), servername: tlsOptions.servername })
      : net.connect({ host, port, allowHalfOpen: true });
    track(id, socket);
    socket.on(tlsOptions ? "secureConnect" : "connect", () => emit("connected", { conn: id, local: `${socket.localAddress}:${socket.localPort}` }));
  },
  send({ conn: id, bytes, text }) {
    const st = conn(id);
    const buf = text !== undefined ? Buffer.from(text) : randomBytes(bytes);
    write(st, buf, (err) => {
      if (!err) emit("sent", { conn: id, bytes: buf.length, total: st.sent, sha256: st.sentHash.copy().digest("hex") });
    });
  },
  stream({ conn: id, chunk = 65536 }) {
    stream(id, chunk);
  },
  "stop-stream"({ conn: id }) {
    conn(id).streaming = false;
  },
  end({ conn: id }) {
    conn(id).socket.end();
  },
  pause({ conn: id }) {
    conn(id).socket.pause();
  },
  resume({ conn: id }) {
    conn(id).socket.resume();
  },
  destroy({ conn: id }) {
    conn(id).socket.destroy();
  },
  reset({ conn: id }) {
    conn(id).socket.resetAndDestroy();
  },
};

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "") return;
  let msg;
  try {
    msg = JSON.parse(line);
    const handler = handlers[msg.cmd];
    if (handler === undefined) throw new Error(`unknown command ${msg.cmd}`);
    handler(msg);
  } catch (err) {
    emit("cmd-error", { line, message: err instanceof Error ? err.message : String(err) });
  }
});
process.stdin.on("end", () => process.exit(0));
emit("ready", { pid: process.pid });
