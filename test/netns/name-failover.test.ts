// One upstream name with two addresses, the first refusing: sessions fail
// over to the second, as they would with two names. The name lives in the
// namespace's own hosts file (/etc/netns/NAME/hosts, which `ip netns exec`
// mounts over /etc/hosts), so the test touches no resolver outside it.

import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { describe, test } from "vitest";
import { Lab, netnsSupport } from "../helpers/netns.js";
import { PeerProcess } from "../helpers/peer-process.js";
import { ProxyProcess } from "../helpers/proxy-process.js";

const support = netnsSupport();

describe.skipIf(!support.ok)("failover across the addresses of one name", () => {
  test("a name resolving to a refusing ::1 first and a listening 127.0.0.1 second gets every session through", { timeout: 30_000 }, async ({
    expect,
    onTestFinished,
  }) => {
    const lab = new Lab();
    onTestFinished(() => lab.destroy());
    const box = await lab.namespace("box");
    const etc = `/etc/netns/${box.name}`;
    mkdirSync(etc, { recursive: true });
    lab.defer(() => rmSync(etc, { recursive: true, force: true }));
    // IPv6 first, as `localhost` often is, while the service listens on IPv4 only.
    writeFileSync(`${etc}/hosts`, "::1 db.internal\n127.0.0.1 db.internal\n");

    const [clients, server] = await Promise.all([PeerProcess.start(box, lab), PeerProcess.start(box, lab)]);
    const port = await server.listen("127.0.0.1");
    const proxy = await ProxyProcess.start(box, lab, ["--listen", "127.0.0.1:0", "--upstream", `db.internal:${port}`, "--admin", "off", "--drain-timeout", "0"]);

    for (let i = 1; i <= 3; i++) {
      const client = clients.connect("127.0.0.1", proxy.port);
      await client.waitFor("connected", 5_000);
      const upstream = await server.accepted(i, 5_000);
      client.send("ping");
      await upstream.waitForBytes(4, 5_000);
      upstream.send("pong");
      await client.waitForBytes(4, 5_000);
    }
    const refused = proxy.logs.items.filter((l) => l.msg === "upstream unreachable");
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((l) => l.upstream === `[::1]:${port}` && l.result === "refused")).toBe(true);
    expect(proxy.logs.items.filter((l) => l.msg === "session closed")).toEqual([]);
  });
});
