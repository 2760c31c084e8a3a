import { describe, expect, it } from "vitest";
import { CancelSource } from "../../src/util/cancel-signal.js";
import { startProxiedSession } from "../helpers/proxied-session.js";

describe("what an established session keeps", () => {
  it("holds nothing of its connect attempt: one error, end and close listener per leg, the session's own", async () => {
    const { proxy, establish } = await startProxiedSession({ "connect-timeout": "10s" });
    await establish();
    const [session] = [...proxy.sessions()];
    const upstream = session?.upstreamSocket;
    expect(upstream).toBeDefined();
    for (const leg of [session?.client, upstream]) {
      // A second error listener would be the connect attempt's, and with it its
      // timer, closures and promise, kept for as long as the session lives.
      expect(leg?.listenerCount("error")).toBe(1);
      expect(leg?.listenerCount("connect")).toBe(0);
    }
  });
});

describe("CancelSource", () => {
  it("tells every waiter once, in order, and none that was removed or came late", () => {
    const source = new CancelSource();
    const heard: string[] = [];
    const a = (): void => {
      heard.push("a");
    };
    const b = (): void => {
      heard.push("b");
    };
    const c = (): void => {
      heard.push("c");
    };
    source.addEventListener("abort", a);
    source.addEventListener("abort", b);
    source.addEventListener("abort", c);
    source.removeEventListener("abort", a);
    source.abort();
    source.abort();
    source.addEventListener("abort", () => heard.push("late"));
    expect(heard).toEqual(["b", "c"]);
    expect(source.aborted).toBe(true);
  });
});
