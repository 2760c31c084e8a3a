// The clients of the fault-injection soak, run in the proxy's network
// namespace as `ip netns exec NS node soak-clients.mjs PLAN_JSON`. PLAN_JSON:
//   durationMs   start new sessions for this long, then let the last ones finish
//   concurrency  sessions in flight at once (each slot runs one after another)
//   deadlineMs   a session not finished by then is `hung` (destroyed and reported)
//   scenarios    [{name, host, port, kind, expect, weight, bytes: [min, max]}]
// kinds:
//   clean        sends random bytes while reading the echo; sends its FIN only
//                once the whole echo is back; then waits for the upstream's FIN
//   half-close   sends everything and its FIN at once, then still reads the whole echo
//   slow-reader  reads in small sips with pauses, so the proxy must hold back
//   client-reset sends and reads, then resets (RST) after a random 0-300 ms
// expect (what an ending may be; anything else is a problem):
//   intact       a clean end with every byte echoed, sha256 equal
//   intact-or-aborted  the same, or an error (reset, timeout) - never a clean
//                end with bytes missing
//   aborted      an error: the upstream refused or reset, so a clean end would
//                be a false clean close
//   any          whatever the ending, as long as it ends
// Reports {"ev":"problem", ...} for each session that ended as it must not,
// {"ev":"progress"} every 5 s and {"ev":"summary", ...} at the end, then exits.

import { createHash, randomBytes } from "node:crypto";
import net from "node:net";

const plan = JSON.parse(process.argv[2] ?? "{}");
/** Random data is sliced from this pool at random offsets: cheap to make, and a reordered or repeated chunk still changes the hash. */
const POOL = randomBytes(4 * 1024 * 1024);
const MAX_CHUNK = 64 * 1024;
const RESET_AFTER_MS = 300;
/** The slow reader's pause after each chunk it reads. */
const SIP_PAUSE_MS = [5, 60];

function emit(ev, fields = {}) {
  process.stdout.write(`${JSON.stringify({ ev, t: Date.now(), ...fields })}\n`);
}

function between(min, max) {
  return min + Math.floor(Math.random() * (max - min + 1));
}

/** Log-uniform: as many small transfers as large ones. */
function size([min, max]) {
  return Math.round(Math.exp(Math.log(min) + Math.random() * (Math.log(max) - Math.log(min))));
}

function slice(n) {
  const start = between(0, POOL.length - n);
  return POOL.subarray(start, start + n);
}

const totals = {
  sessions: 0,
  connected: {},
  resetBeforeConnect: {},
  byScenario: {},
  bytesSent: 0,
  bytesChecked: 0,
  problems: 0,
  errnos: {},
};

/** One session; resolves with how it ended. */
function runSession(sc) {
  return new Promise((resolve) => {
    const total = size(sc.bytes);
    const sentHash = createHash("sha256");
    const recvHash = createHash("sha256");
    const st = { sent: 0, received: 0, connected: false, ended: false, errno: undefined, finished: false, localPort: undefined };
    const socket = net.connect({ host: sc.host, port: sc.port, allowHalfOpen: true });
    const timers = [];
    const done = (outcome) => {
      if (st.finished) return;
      st.finished = true;
      for (const t of timers) clearTimeout(t);
      resolve({ outcome, ...st, total, sha256Sent: sentHash.digest("hex"), sha256Received: recvHash.digest("hex") });
    };
    timers.push(
      setTimeout(() => {
        socket.destroy();
        done("hung");
      }, plan.deadlineMs),
    );

    const send = (finish) => {
      // Writes until `total` bytes are queued, respecting backpressure.
      const pump = () => {
        while (st.sent < total && !socket.destroyed) {
          const piece = slice(Math.min(between(1, MAX_CHUNK), total - st.sent));
          sentHash.update(piece);
          st.sent += piece.length;
          totals.bytesSent += piece.length;
          if (!socket.write(piece)) {
            socket.once("drain", pump);
            return;
          }
        }
        if (st.sent >= total && !socket.destroyed) finish();
      };
      pump();
    };

    socket.on("connect", () => {
      st.connected = true;
      st.localPort = socket.localPort;
      totals.connected[sc.name] = (totals.connected[sc.name] ?? 0) + 1;
      switch (sc.kind) {
        case "clean":
        case "slow-reader":
          send(() => undefined);
          break;
        case "half-close":
          send(() => socket.end());
          break;
        case "client-reset":
          send(() => undefined);
          timers.push(
            setTimeout(() => {
              if (socket.destroyed) return;
              socket.resetAndDestroy();
              done("reset-sent");
            }, between(0, RESET_AFTER_MS)),
          );
          break;
        default:
          throw new Error(`unknown kind ${sc.kind}`);
      }
    });
    socket.on("data", (chunk) => {
      recvHash.update(chunk);
      st.received += chunk.length;
      // Everything echoed: now the client's FIN (clean, slow-reader); half-close sent it already.
      if (st.received === total && (sc.kind === "clean" || sc.kind === "slow-reader")) socket.end();
      if (sc.kind === "slow-reader") {
        socket.pause();
        timers.push(setTimeout(() => socket.resume(), between(...SIP_PAUSE_MS)));
      }
    });
    socket.on("end", () => {
      st.ended = true;
      // A FIN before the whole echo: the session was closed as if clean with bytes missing.
      // Judged now rather than left half-open until the deadline.
      if (sc.kind !== "client-reset" && st.received !== total) {
        socket.destroy();
        done("clean-end-short");
      }
    });
    socket.on("error", (err) => {
      st.errno ??= err.code ?? "unknown";
      // A reset that beats Node's connect callback fails the connect itself:
      // the proxy accepted that connection all the same (a refused SYN would be ECONNREFUSED).
      if (!st.connected && st.errno === "ECONNRESET") totals.resetBeforeConnect[sc.name] = (totals.resetBeforeConnect[sc.name] ?? 0) + 1;
    });
    socket.on("close", () => {
      if (st.errno !== undefined || !st.ended) done("aborted");
      else done(st.received === total && st.sent === total ? "clean-end" : "clean-end-short");
    });
  });
}

/** Whether an ending is allowed for the scenario's expectation; a clean end must carry every byte, intact. */
function judge(sc, r) {
  const intact = r.outcome === "clean-end" && r.sha256Received === r.sha256Sent;
  if (r.outcome === "hung") return { ok: false, verdict: "hung" };
  if (r.outcome.startsWith("clean-end") && !intact) {
    return { ok: false, verdict: sc.expect === "aborted" ? "false clean close (FIN where the upstream failed)" : "clean end, data not intact" };
  }
  switch (sc.expect) {
    case "intact":
      return intact ? { ok: true, verdict: "intact" } : { ok: false, verdict: `${r.outcome} (${r.errno ?? "no errno"}) where intact was due` };
    case "intact-or-aborted":
      return { ok: true, verdict: intact ? "intact" : "aborted" };
    case "aborted":
      return r.outcome === "aborted" ? { ok: true, verdict: "aborted" } : { ok: false, verdict: "false clean close" };
    case "any":
      return { ok: true, verdict: r.outcome === "reset-sent" ? "reset-sent" : intact ? "intact" : r.outcome };
    default:
      return { ok: false, verdict: `unknown expectation ${sc.expect}` };
  }
}

function record(sc, r) {
  totals.sessions += 1;
  const { ok, verdict } = judge(sc, r);
  totals.byScenario[sc.name] ??= { sessions: 0, verdicts: {}, bytesChecked: 0, problems: 0 };
  const by = totals.byScenario[sc.name];
  by.sessions += 1;
  by.verdicts[verdict] = (by.verdicts[verdict] ?? 0) + 1;
  if (r.errno !== undefined) totals.errnos[r.errno] = (totals.errnos[r.errno] ?? 0) + 1;
  if (verdict === "intact") {
    // Both ways: every byte sent was hashed, every byte echoed back matched it.
    by.bytesChecked += r.received;
    totals.bytesChecked += r.received;
  }
  if (!ok) {
    by.problems += 1;
    totals.problems += 1;
    const { sha256Sent, sha256Received, ...rest } = r;
    emit("problem", { scenario: sc.name, verdict, ...rest, hashesEqual: sha256Sent === sha256Received });
  }
}

function pick(scenarios, weightSum) {
  let x = Math.random() * weightSum;
  for (const sc of scenarios) {
    x -= sc.weight;
    if (x < 0) return sc;
  }
  return scenarios[scenarios.length - 1];
}

async function slot(stopAt, scenarios, weightSum) {
  while (Date.now() < stopAt) {
    const sc = pick(scenarios, weightSum);
    record(sc, await runSession(sc));
  }
}

const started = Date.now();
const stopAt = started + plan.durationMs;
const weightSum = plan.scenarios.reduce((s, sc) => s + sc.weight, 0);
const progress = setInterval(
  () => emit("progress", { sessions: totals.sessions, problems: totals.problems, bytesChecked: totals.bytesChecked }),
  5_000,
);
// The harness closes stdin to stop a run early (teardown after a failure).
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
await Promise.all(Array.from({ length: plan.concurrency }, () => slot(stopAt, plan.scenarios, weightSum)));
clearInterval(progress);
emit("summary", { elapsedMs: Date.now() - started, ...totals });
process.exit(0);
