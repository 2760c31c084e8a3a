import { describe, expect, it } from "vitest";
import { waitUntil } from "../helpers/in-process-proxy.js";
import { rssBytes, startLocalProxy } from "../helpers/local-proxy.js";
import { connectClient, observe, sendRandom, startServer } from "../helpers/tcp.js";

const MB = 1024 * 1024;

describe("backpressure", () => {
  it("holds a 200 MB download for a client that does not read for 5 s without growing by 32 MB", async () => {
    const upstream = await startServer();
    const proxy = await startLocalProxy(["--listen", "127.0.0.1:0", "--upstream", `127.0.0.1:${upstream.port}`, "--admin", "off"]);
    const client = await connectClient(proxy.port);
    client.pause(); // the slow reader: nothing is read for 5 s
    const server = await upstream.accepted();
    const before = rssBytes(proxy.pid);
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssBytes(proxy.pid));
    }, 50);
    try {
      const sent = sendRandom(server, 200 * MB, 256 * 1024);
      await new Promise((r) => setTimeout(r, 5000));
      const growth = peak - before;
      console.log(`proxy RSS ${Math.round(before / MB)} MB before, peak growth ${(growth / MB).toFixed(1)} MB while the client did not read`);
      expect(growth).toBeLessThan(32 * MB);

      const atClient = observe(client);
      client.resume();
      const hash = await sent;
      server.end();
      await waitUntil(() => atClient.ended || undefined, 60_000, "all 200 MB at the client");
      expect(atClient.bytes).toBe(200 * MB);
      expect(atClient.hash.digest("hex")).toBe(hash);
    } finally {
      clearInterval(sampler);
    }
  });
});
