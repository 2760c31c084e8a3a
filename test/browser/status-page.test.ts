// The status page in a real browser: Debian's headless Chromium driven by
// playwright-core (which downloads nothing: executablePath is the system's),
// against the proxy CLI and its two workers between network namespaces. The
// page must show a live session and its legs, highlight it while the
// upstream's keepalive probes go unanswered after the upstream host vanishes,
// then list it as closed with upstream_timeout; sort and filter; show markup
// as text; load nothing from elsewhere and log no console error.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";
import { describe, expect, onTestFinished, test } from "vitest";
import { startLocalProxy } from "../helpers/local-proxy.js";
import { Lab, netnsSupport, threeHop, vanish } from "../helpers/netns.js";
import { bridgeInto } from "../helpers/ns-bridge.js";
import { startPeers, startProxy } from "../helpers/ns-session.js";
import { connectClient, startServer } from "../helpers/tcp.js";
import { toolSupport } from "../helpers/tools.js";

const CHROMIUM = "/usr/bin/chromium";
const SCREENSHOT = process.env.STATUS_PAGE_SCREENSHOT ?? fileURLToPath(new URL("../results/status-page.png", import.meta.url));
/** Dead ~8 s after the last byte: first probe after 2 s idle, then one every 2 s, 3 unanswered; the row stays highlighted ~6 s, three refreshes. */
const KEEPALIVE_ARGS = ["--keepalive-idle", "2s", "--keepalive-interval", "2s", "--keepalive-count", "3", "--user-timeout", "8s"];
const MARKUP = "<img src=x onerror=alert(1)>";

const netns = netnsSupport();
const browser = toolSupport("chromium");
const support = !netns.ok ? netns : browser;
if (!support.ok) console.warn(`skipping the browser test: ${support.reason}`);

/** A TCP port in the test's namespace that leads to a Unix socket (the bridge into the proxy's namespace). */
async function tcpToUnix(socketPath: string): Promise<number> {
  const server: Server = createServer((inbound) => {
    const outbound = connect(socketPath);
    inbound.pipe(outbound).pipe(inbound);
    inbound.on("error", () => outbound.destroy());
    outbound.on("error", () => inbound.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as { port: number }).port;
}

async function launch(): Promise<Browser> {
  // launch() gives the browser a fresh temporary profile (--user-data-dir) and removes it at close.
  const b = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  onTestFinished(() => b.close());
  return b;
}

/** Texts of one column of the live sessions table, in row order. */
function column(page: Page, index: number): Promise<string[]> {
  return page.$$eval(`#sessions tbody tr td:nth-child(${index})`, (cells) => cells.map((c) => c.textContent ?? ""));
}

describe.skipIf(!support.ok)("the status page in Chromium", () => {
  test("shows a live session and its legs, highlights it while the upstream's probes go unanswered, then lists it closed; sorts, filters, shows markup as text", {
    timeout: 90_000,
  }, async () => {
    const lab = new Lab();
    onTestFinished(() => lab.destroy());
    const topo = await threeHop(lab);
    const peers = await startPeers(lab, topo);
    const proxy = await startProxy(lab, topo, peers.upstreamPort, ["--admin", "127.0.0.1:0", "--workers", "2", ...KEEPALIVE_ARGS]);
    const adminPort = await proxy.adminPort();
    const origin = `http://127.0.0.1:${await tcpToUnix(await bridgeInto(topo.proxy, lab, "127.0.0.1", adminPort))}`;

    const b = await launch();
    const page = await b.newPage({ viewport: { width: 1800, height: 640 } });
    const consoleErrors: string[] = [];
    const foreign: string[] = [];
    const dialogs: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error") consoleErrors.push(m.text());
    });
    page.on("pageerror", (e) => consoleErrors.push(e.message));
    page.on("request", (r) => {
      if (!r.url().startsWith(`${origin}/`)) foreign.push(r.url());
    });
    page.on("dialog", (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });

    const res = await page.goto(`${origin}/`);
    expect(res?.status()).toBe(200);
    await page.waitForSelector("#live:text('live: refreshed every 2 s')", { timeout: 5_000 });

    // One session that ends cleanly, then three with different byte counts, opened once the page is
    // live: each appears within 3 s.
    const open = async (n: number, size: number) => {
      const c = peers.clientPeer.connect(topo.proxyClientIp, proxy.port);
      await c.waitFor("connected", 5_000);
      const u = await peers.upstreamPeer.accepted(n, 5_000);
      c.send(size);
      await u.waitForBytes(size, 5_000);
      u.send(4);
      await c.waitForBytes(4, 5_000);
      return { c, u };
    };
    const done = await open(1, 64);
    done.c.end();
    done.u.end();
    await proxy.waitForSessionClosed(5_000);
    const sizes = [300, 10, 2000];
    for (const [i, size] of sizes.entries()) await open(i + 2, size);
    const opened = Date.now();
    // Locators, not page functions: the page's CSP forbids evaluating strings, as it should.
    await page.locator("#sessions tbody tr[data-session-id]").nth(2).waitFor({ timeout: 3_000 });
    expect(await page.locator("#sessions tbody tr[data-session-id]").count()).toBe(3);
    expect(Date.now() - opened).toBeLessThan(3_000);
    const row = page.locator("#sessions tbody tr").first();
    // Both legs established, keepalive probes 0 of 3, each row with its worker.
    expect(await row.locator("td").nth(8).textContent()).toBe("ESTABLISHED");
    expect(await row.locator("td").nth(12).textContent()).toBe("0/3");
    expect(await row.locator("td").nth(15).textContent()).toBe("ESTABLISHED");
    expect(["1", "2"]).toContain(await row.locator("td").nth(1).textContent());

    // Sorting: by bytes from the client, ascending, then descending.
    await page.click("#sessions th[data-sort='bytesFromClient']");
    expect(await column(page, 7)).toEqual(["10 B", "300 B", "2000 B"].map((s) => s.replace("2000 B", "2.0 KiB")));
    await page.click("#sessions th[data-sort='bytesFromClient']");
    expect(await column(page, 7)).toEqual(["2.0 KiB", "300 B", "10 B"]);
    // Filtering: by address (one client's port), then by listener.
    const oneClient = (await column(page, 5))[1] ?? "";
    await page.fill("#filter-address", oneClient);
    expect(await column(page, 5)).toEqual([oneClient]);
    await page.fill("#filter-address", "");
    await page.selectOption("#filter-listener", "default");
    expect(await column(page, 5)).toHaveLength(3);
    await page.selectOption("#filter-listener", "");

    // Markup in a field (a client certificate subject once TLS is there; here the client field of a
    // rewritten /status.json from the same origin) is shown as text and runs nothing.
    await page.route(`${origin}/status.json`, async (route) => {
      const answer = await route.fetch();
      const report = (await answer.json()) as { sessions: { connections: Record<string, unknown>[] } };
      const first = report.sessions.connections[0];
      if (first !== undefined) {
        first.client = MARKUP;
        first.tls = { protocol: "TLSv1.3", peerSubject: `CN=${MARKUP}` };
      }
      await route.fulfill({ response: answer, json: report });
    });
    const cellWithMarkup = page.locator("#sessions td", { hasText: MARKUP }).first();
    await cellWithMarkup.waitFor({ timeout: 5_000 });
    expect(await cellWithMarkup.textContent()).toBe(MARKUP);
    expect(await page.locator("#sessions img").count()).toBe(0);
    expect(await page.locator("#sessions td", { hasText: `TLSv1.3 CN=${MARKUP}` }).count()).toBe(1);
    await page.unroute(`${origin}/status.json`);
    await cellWithMarkup.waitFor({ state: "detached", timeout: 5_000 });

    // The upstream host vanishes: its leg sends probes nobody answers, the rows are highlighted.
    await vanish(topo.upstream);
    await page.waitForSelector("#sessions tbody tr.probing", { timeout: 10_000 });
    const probes = await page.locator("#sessions tbody tr.probing td.probes").first().textContent();
    expect(probes).toMatch(/^[1-3]\/3$/);
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // Then each moves to the closed list with upstream_timeout.
    await page.locator("#sessions tbody tr").first().waitFor({ state: "detached", timeout: 20_000 });
    const reasons = await page.$$eval("#closed tbody tr td:nth-child(7)", (cells) => cells.map((c) => c.textContent));
    expect(reasons.slice(0, 3)).toEqual(["upstream_timeout", "upstream_timeout", "upstream_timeout"]);
    // The first, short session closed cleanly; which side's FIN came first is a race.
    expect(reasons).toHaveLength(4);
    expect(["client_eof", "upstream_eof"]).toContain(reasons[3]);

    expect(consoleErrors).toEqual([]);
    expect(foreign).toEqual([]);
    expect(dialogs).toEqual([]);
  });
});

describe.skipIf(!browser.ok)("the status page with an admin token, in Chromium", () => {
  test("asks for the token once, keeps it for the tab, and shows the sessions; a wrong token is asked again", { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "kp-token-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const token = "browser-token-0123456789abcdef";
    writeFileSync(join(dir, "token"), `${token}\n`);
    const upstream = await startServer();
    const proxy = await startLocalProxy([
      "--listen",
      "127.0.0.1:0",
      "--upstream",
      `127.0.0.1:${upstream.port}`,
      "--admin",
      "127.0.0.1:0",
      "--admin-token-file",
      join(dir, "token"),
    ]);
    const origin = `http://127.0.0.1:${await proxy.adminPort()}`;
    await connectClient(proxy.port);

    const b = await launch();
    const page = await b.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const res = await page.goto(`${origin}/`);
    expect(res?.status()).toBe(401);
    await page.locator("#login").waitFor({ state: "visible", timeout: 5_000 });
    expect(await page.locator("#sessions tbody tr").count()).toBe(0);

    await page.fill("#token", "wrong-token-0123456789abcdef00");
    await page.click("#login button[type=submit]");
    await page.locator("#login-error", { hasText: "That token was refused." }).waitFor({ timeout: 5_000 });

    await page.fill("#token", token);
    await page.click("#login button[type=submit]");
    await page.locator("#sessions tbody tr[data-session-id]").first().waitFor({ timeout: 5_000 });
    expect(await page.locator("#login").isHidden()).toBe(true);
    expect(await page.evaluate(() => sessionStorage.length)).toBe(1);
    // A reload of the tab keeps the token: no second prompt.
    await page.reload();
    await page.locator("#sessions tbody tr[data-session-id]").first().waitFor({ timeout: 5_000 });
    expect(await page.locator("#login").isHidden()).toBe(true);
    expect(errors).toEqual([]);
  });
});
