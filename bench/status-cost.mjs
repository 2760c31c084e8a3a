// Measures /status.json and the status page: N idle sessions through the CLI
// (default --workers auto), then three /status.json?limit=L plain and gzipped,
// one page load, and echo round trips on another session meanwhile.
// Usage: npm run build && node bench/status-cost.mjs N [L]   (N 10000 needs RLIMIT_NOFILE >= 20000)
import { spawn } from "node:child_process";
import { connect } from "node:net";
import { request } from "node:http";
import { performance } from "node:perf_hooks";
const N = Number(process.argv[2] ?? 1000);
const LIMIT = Number(process.argv[3] ?? N);
const upChild = spawn(process.execPath, ["-e", "const s=require('net').createServer(c=>c.on('data',d=>c.write(d)).on('error',()=>{})).listen(0,'127.0.0.1',()=>console.log(s.address().port))"], { stdio: ["ignore", "pipe", "inherit"] });
const upPort = await new Promise((r) => upChild.stdout.once("data", (d) => r(Number(String(d).trim()))));
const up = { address: () => ({ port: upPort }), close: () => upChild.kill() };
const child = spawn(process.execPath, ["dist/cli.js", "--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${up.address().port}`, "--admin", "127.0.0.1:0", "--log-level", "info"], { stdio: ["ignore", "pipe", "inherit"] });
let port, admin, buf = "";
await new Promise((resolve) => child.stdout.on("data", (d) => {
  buf += d;
  for (const line of buf.split("\n")) {
    if (!line.startsWith("{")) continue;
    try { const j = JSON.parse(line); if (j.msg === "listening") port = j.port; if (j.msg === "admin listening") admin = j.port; } catch {}
  }
  if (port && admin) resolve();
}));
const socks = [];
for (let i = 0; i < N; i++) {
  const s = connect(port, "127.0.0.1");
  s.on("error", () => {});
  s.on("data", () => {});
  socks.push(s);
  if (i % 200 === 199) await new Promise((r) => setTimeout(r, 20));
}
await new Promise((r) => setTimeout(r, 1500));
for (const s of socks) s.write("hello");
await new Promise((r) => setTimeout(r, 500));
function get(path, headers = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = request({ host: "127.0.0.1", port: admin, path, headers, agent: false }, (res) => {
      let n = 0; res.on("data", (c) => (n += c.length)); res.on("end", () => resolve({ status: res.statusCode, bytes: n, ms: performance.now() - t0, enc: res.headers["content-encoding"] }));
    });
    req.on("error", reject); req.end();
  });
}
// echo latency on one session meanwhile
const probe = connect(port, "127.0.0.1"); await new Promise((r) => probe.once("connect", r));
const lat = []; let stop = false;
(async () => { while (!stop) { const t = performance.now(); probe.write("x"); await new Promise((r) => probe.once("data", r)); lat.push(performance.now() - t); await new Promise((r) => setTimeout(r, 10)); } })();
await new Promise((r) => setTimeout(r, 1000));
const base = lat.splice(0);
const results = [];
for (let i = 0; i < 3; i++) {
  results.push(await get(`/status.json?limit=${LIMIT}`));
  results.push(await get(`/status.json?limit=${LIMIT}`, { "accept-encoding": "gzip, deflate, br" }));
}
const page = await get(`/?limit=${LIMIT}`);
stop = true;
const q = (a, p) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]?.toFixed(2); };
console.log(JSON.stringify({ N, LIMIT, results, page, echoIdle: { p50: q(base, 0.5), p99: q(base, 0.99) }, echoDuring: { n: lat.length, p50: q(lat, 0.5), p99: q(lat, 0.99), max: q(lat, 1) } }, null, 1));
child.kill("SIGTERM"); for (const s of socks) s.destroy(); probe.destroy(); up.close();
setTimeout(() => process.exit(0), 500);
