// Linux network namespaces for tests where a host must vanish, a SYN must go
// unanswered or a NAT must forget a flow. Everything lives inside namespaces
// this module creates: no veth end, route, sysctl or nft rule ever touches the
// root namespace, and every namespace is deleted in teardown, even on failure.

import { randomInt } from "node:crypto";
import { threadId } from "node:worker_threads";
import { runTool } from "./tools.js";

/** One network namespace created by a `Lab`. */
export interface Namespace {
  /** The name `ip netns` knows it by. */
  readonly name: string;
  /** What the test calls it: `client`, `proxy`, `router`, `upstream`. */
  readonly role: string;
}

/** One end of a veth pair, with its address on the link's /24. */
export interface LinkEnd {
  readonly ns: Namespace;
  readonly dev: string;
  readonly ip: string;
}

/** A veth pair joining two namespaces over its own /24. */
export interface Link {
  readonly subnet: string;
  readonly a: LinkEnd;
  readonly b: LinkEnd;
}

/** Something that takes teardown work, run last-in first-out. */
export interface Teardown {
  defer(fn: () => Promise<void> | void): void;
}

/** Whether this process can create namespaces, and why not. */
export type NetnsSupport = { ok: true } | { ok: false; reason: string };

/**
 * Tells whether the netns suite can run here. In CI it always answers yes, so
 * a machine that lost its privileges fails loudly instead of skipping.
 */
export function netnsSupport(): NetnsSupport {
  if (process.env.CI === "true") return { ok: true };
  if (process.platform !== "linux") return { ok: false, reason: "network namespaces need Linux" };
  if (process.getuid?.() !== 0) {
    return { ok: false, reason: "network namespace tests need root (run as root, or with CI=true to force)" };
  }
  return { ok: true };
}

/** What a command printed, once it exited with status 0. */
export interface CommandResult {
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs argv (no shell), feeding `input` on stdin; rejects with stderr on a non-zero exit. */
export async function run(argv: readonly string[], input?: string): Promise<CommandResult> {
  const { code, signal, stdout, stderr } = await runTool(argv, { input });
  if (code !== 0) throw new Error(`${argv.join(" ")} exited with ${code ?? signal}: ${stderr.trim() || stdout.trim()}`);
  return { stdout, stderr };
}

/** Runs argv inside the namespace (`ip netns exec`). */
export function exec(ns: Namespace, argv: readonly string[], input?: string): Promise<CommandResult> {
  return run(["ip", "netns", "exec", ns.name, ...argv], input);
}

/** Sets sysctls inside the namespace, in order (per-netns keys only, e.g. net.ipv4.ip_forward). */
export async function sysctl(ns: Namespace, settings: Readonly<Record<string, string | number>>): Promise<void> {
  await exec(ns, ["sysctl", "-q", "-w", ...Object.entries(settings).map(([key, value]) => `${key}=${value}`)]);
}

/** Loads an nft script inside the namespace. */
export async function nft(ns: Namespace, script: string): Promise<void> {
  await exec(ns, ["nft", "-f", "-"], script);
}

const VANISH_TABLE = "kp_vanish";

/** Makes the namespace's host disappear: every packet in or out is dropped, nothing answered. */
export async function vanish(ns: Namespace): Promise<void> {
  await nft(
    ns,
    `table inet ${VANISH_TABLE} {
      chain input { type filter hook input priority -300; policy drop; }
      chain output { type filter hook output priority -300; policy drop; }
    }`,
  );
}

/** Brings a vanished host back. */
export async function restore(ns: Namespace): Promise<void> {
  await exec(ns, ["nft", "delete", "table", "inet", VANISH_TABLE]);
}

/** Drops incoming SYNs to `port` in the namespace, so connects there hang until they time out. */
export async function dropSyns(ns: Namespace, port: number): Promise<void> {
  await nft(
    ns,
    `table inet kp_dropsyn_${port} {
      chain input {
        type filter hook input priority -300; policy accept;
        tcp dport ${port} tcp flags & (fin|syn|rst|ack) == syn drop
      }
    }`,
  );
}

/** Reads one kernel SNMP counter (e.g. `TcpOutRsts`) of the namespace, with nstat. */
export async function nstatCounter(ns: Namespace, counter: string): Promise<number> {
  // -a: absolute values; -s: do not write nstat's history file, which is per
  // user and not per namespace; -z: print the counter even when it is zero.
  const { stdout } = await exec(ns, ["nstat", "-asz", counter]);
  const line = stdout.split("\n").find((l) => l.startsWith(`${counter} `));
  if (line === undefined) throw new Error(`nstat printed no ${counter} in ${ns.name}: ${stdout}`);
  const value = Number(line.trim().split(/\s+/)[1]);
  if (!Number.isFinite(value)) throw new Error(`nstat: bad ${counter} line in ${ns.name}: ${line}`);
  return value;
}

/** Adds a route inside the namespace. */
export async function addRoute(ns: Namespace, cidr: string, via: string): Promise<void> {
  await run(["ip", "-n", ns.name, "route", "add", cidr, "via", via]);
}

/** Prefix of every namespace this module creates; the pid in it lets a later run sweep leftovers. */
const NS_PREFIX = "kpt-";
const NS_PATTERN = /^kpt-(\d+)-/;

let labCounter = 0;
let linkCounter = 0;
let swept: Promise<void> | undefined;

/**
 * Deletes namespaces (and kills what runs in them) left behind by test
 * processes that died without their teardown (SIGKILL, OOM). Only those whose
 * creator pid no longer exists, so a concurrent run is never disturbed.
 */
function sweepLeftovers(): Promise<void> {
  swept ??= (async () => {
    const { stdout } = await run(["ip", "netns", "list"]);
    for (const line of stdout.split("\n")) {
      const name = line.split(" ")[0] ?? "";
      const pid = Number(NS_PATTERN.exec(name)?.[1]);
      if (!Number.isInteger(pid) || pid === process.pid || isAlive(pid)) continue;
      // A proxy or peer still inside would keep the namespace (and its veths) alive after `del`.
      const pids = await run(["ip", "netns", "pids", name]).catch(() => ({ stdout: "" }));
      for (const p of pids.stdout.split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(p), "SIGKILL");
        } catch {
          // Already gone.
        }
      }
      await run(["ip", "netns", "del", name]).catch(() => undefined);
    }
  })();
  return swept;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Short interface name, unique across processes and worker threads: fixed-width
 * base36 pid (max pid 4194304 is 5 digits), thread id and counter, so that no
 * two different triples concatenate to the same name. 12 chars ≤ IFNAMSIZ-1.
 */
function vethName(side: "a" | "b", index: number): string {
  const pad = (n: number, w: number) => n.toString(36).padStart(w, "0").slice(-w);
  return `k${pad(process.pid, 5)}${pad(threadId, 2)}${pad(index, 3)}${side}`;
}

/**
 * The namespaces, links and processes of one test. Create one per test and
 * register `destroy` at once (`onTestFinished(() => lab.destroy())`); every
 * resource registers its own removal the moment it exists.
 */
export class Lab implements Teardown {
  readonly #cleanups: Array<() => Promise<void> | void> = [];
  readonly #id = ++labCounter;
  /** Second octet of this lab's 10.x.y.z/24 links: only meaningful inside its namespaces. */
  readonly #octet = randomInt(16, 250);
  #links = 0;
  #destroyed = false;

  /** Registers teardown work; it runs before everything registered earlier. */
  defer(fn: () => Promise<void> | void): void {
    if (this.#destroyed) throw new Error("Lab already destroyed");
    this.#cleanups.push(fn);
  }

  /** Creates a namespace with `lo` up. */
  async namespace(role: string): Promise<Namespace> {
    await sweepLeftovers();
    const ns: Namespace = { name: `${NS_PREFIX}${process.pid}-${threadId}-${this.#id}-${role}`, role };
    await run(["ip", "netns", "add", ns.name]);
    // `ip netns del` also removes the veth ends inside it.
    this.defer(() => run(["ip", "netns", "del", ns.name]).then(() => undefined));
    await run(["ip", "-n", ns.name, "link", "set", "lo", "up"]);
    return ns;
  }

  /**
   * Joins two namespaces with a veth pair on a fresh /24: `a` gets .1, `b` gets
   * .2. The pair is created directly inside the two namespaces, never in the
   * root one.
   */
  async link(a: Namespace, b: Namespace): Promise<Link> {
    const index = ++linkCounter;
    const net = `10.${this.#octet}.${++this.#links}`;
    const ends = {
      a: { ns: a, dev: vethName("a", index), ip: `${net}.1` },
      b: { ns: b, dev: vethName("b", index), ip: `${net}.2` },
    };
    const add = `link add ${ends.a.dev} netns ${a.name} type veth peer name ${ends.b.dev} netns ${b.name}`;
    await run(["ip", ...add.split(" ")]);
    // One `ip -n NS -batch` per end: fewer processes to start when many labs are built at once.
    await Promise.all(
      [ends.a, ends.b].map((end) =>
        run(["ip", "-n", end.ns.name, "-batch", "-"], `addr add ${end.ip}/24 dev ${end.dev}\nlink set ${end.dev} up\n`),
      ),
    );
    return { subnet: `${net}.0/24`, ...ends };
  }

  /** Runs every registered teardown, newest first; throws the first failure after trying all. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    const errors: unknown[] = [];
    for (const fn of this.#cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, "Lab teardown failed");
  }
}

/** client ⇄ proxy ⇄ upstream: the proxy namespace holds both legs; client and upstream reach only it. */
export interface ThreeHop {
  readonly client: Namespace;
  readonly proxy: Namespace;
  readonly upstream: Namespace;
  /** The proxy's address on the client link (listen here). */
  readonly proxyClientIp: string;
  /** The upstream's address (the proxy connects here). */
  readonly upstreamIp: string;
}

/**
 * Builds client ⇄ proxy ⇄ upstream. No routes are needed: each peer talks only
 * to the proxy's address on its own link, and the proxy does not forward, so
 * the client cannot reach the upstream past it.
 */
export async function threeHop(lab: Lab): Promise<ThreeHop> {
  const [client, proxy, upstream] = await Promise.all([
    lab.namespace("client"),
    lab.namespace("proxy"),
    lab.namespace("upstream"),
  ]);
  const [front, back] = await Promise.all([lab.link(client, proxy), lab.link(proxy, upstream)]);
  return { client, proxy, upstream, proxyClientIp: front.b.ip, upstreamIp: back.b.ip };
}

/** client ⇄ proxy ⇄ router (NAT) ⇄ upstream. */
export interface NatChain extends ThreeHop {
  readonly router: Namespace;
}

/** Conntrack timeout for established flows in the router, in seconds. */
export const NAT_ESTABLISHED_TIMEOUT_S = 5;

/**
 * Builds client ⇄ proxy ⇄ router ⇄ upstream, where the router masquerades the
 * upstream leg and forgets an established flow after
 * NAT_ESTABLISHED_TIMEOUT_S idle seconds. Packets of a forgotten flow are
 * dropped, not answered, like a consumer NAT or a cloud NAT gateway: with
 * nf_conntrack_tcp_loose=0 a mid-stream segment cannot create a new entry
 * (it is `invalid`), and anything reaching the router itself is dropped so its
 * own stack sends no RST. The upstream has no route to the proxy's network, so
 * without the NAT entry nothing can get back.
 */
export async function natChain(lab: Lab): Promise<NatChain> {
  const [client, proxy, router, upstream] = await Promise.all([
    lab.namespace("client"),
    lab.namespace("proxy"),
    lab.namespace("router"),
    lab.namespace("upstream"),
  ]);
  const [front, middle, back] = await Promise.all([
    lab.link(client, proxy),
    lab.link(proxy, router),
    lab.link(router, upstream),
  ]);
  await addRoute(proxy, back.subnet, middle.b.ip);
  await natRouter(router, back.a.dev, { mode: "strict", establishedTimeoutS: NAT_ESTABLISHED_TIMEOUT_S });
  return { client, proxy, router, upstream, proxyClientIp: front.b.ip, upstreamIp: back.b.ip };
}

/** How a NAT router treats a segment of a flow it has forgotten. */
export interface NatRouterOptions {
  /**
   * `strict`: nf_conntrack_tcp_loose=0 and mid-stream segments of unknown
   * flows dropped, so they go nowhere. `loose`: such a segment creates a new
   * entry on a fresh random port (fully-random), which the upstream does not
   * know, so it answers with a reset that the new entry carries back.
   */
  readonly mode: "strict" | "loose";
  /** nf_conntrack_tcp_timeout_established, seconds. */
  readonly establishedTimeoutS: number;
}

/**
 * Makes `router` a NAT that masquerades what leaves through `outDev` and
 * forgets an established flow after `establishedTimeoutS` idle seconds.
 * Anything addressed to the router itself is dropped, so its own stack never
 * answers for the upstream. Conntrack settings are per network namespace, so
 * the host's are untouched.
 */
export async function natRouter(router: Namespace, outDev: string, options: NatRouterOptions): Promise<void> {
  const strict = options.mode === "strict";
  await nft(
    router,
    `table inet kp_nat {
      chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "${outDev}" masquerade ${strict ? "" : "fully-random"}
      }
      chain forward {
        type filter hook forward priority filter; policy accept;
        ${strict ? "ct state invalid drop\n        ct state new tcp flags & (fin|syn|rst|ack) != syn drop" : ""}
      }
      chain input {
        type filter hook input priority filter; policy accept;
        meta l4proto tcp drop
      }
    }`,
  );
  // After the nat chain: on a machine where nothing used conntrack yet, that
  // chain is what loads nf_conntrack, and these sysctls exist only from then on.
  await sysctl(router, {
    "net.ipv4.ip_forward": 1,
    "net.netfilter.nf_conntrack_tcp_loose": strict ? 0 : 1,
    "net.netfilter.nf_conntrack_tcp_timeout_established": options.establishedTimeoutS,
  });
}

/** Conntrack entries in the namespace for TCP flows to `dport` (original direction), one line each. */
export async function conntrackEntries(ns: Namespace, dport: number): Promise<string[]> {
  const { stdout } = await exec(ns, ["conntrack", "-L", "-p", "tcp", "--dport", String(dport)]);
  return stdout.split("\n").filter((l) => l.trim() !== "");
}
