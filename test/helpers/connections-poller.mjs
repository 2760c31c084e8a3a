// Polls the admin server's /connections in a loop from its own process, as a
// dashboard or an operator's watch loop would, so that reading the (large)
// answers costs the test process nothing while it measures latency.
// Usage: node connections-poller.mjs PORT PATH. One JSON line per answer on
// stdout; ends when stdin closes.

import { request } from "node:http";

const [port, path] = process.argv.slice(2);
let stopping = false;
process.stdin.on("end", () => {
  stopping = true;
});
process.stdin.resume();

/** GETs path once; resolves with what the answer held. */
function once() {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = request({ host: "127.0.0.1", port: Number(port), path, agent: false }, (res) => {
      const chunks = [];
      res.on("data", (chunk) => chunks.push(chunk));
      res.on("error", reject);
      res.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        const head = /^\{"total":(\d+),"returned":(\d+)/.exec(body);
        // Entries in the body, counted without parsing it: each has one "listener" key.
        let entries = 0;
        for (let at = body.indexOf('"listener":'); at !== -1; at = body.indexOf('"listener":', at + 1)) entries += 1;
        resolve({
          ev: "poll",
          status: res.statusCode,
          bytes: body.length,
          total: Number(head?.[1] ?? -1),
          returned: Number(head?.[2] ?? -1),
          entries,
          complete: body.endsWith("]}\n"),
          ms: Math.round(performance.now() - started),
        });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

process.stdout.write(`${JSON.stringify({ ev: "ready" })}\n`);
while (!stopping) {
  try {
    process.stdout.write(`${JSON.stringify(await once())}\n`);
  } catch (error) {
    process.stdout.write(`${JSON.stringify({ ev: "error", message: String(error) })}\n`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
process.exit(0);
