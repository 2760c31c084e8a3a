// A real Prometheus (Debian's package) for the metrics tests: a temporary
// config and storage, started inside a network namespace next to the proxy
// it scrapes, queried through its HTTP API over a namespace bridge, and
// killed in teardown even when the test fails.

import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { httpGet } from "./http.js";
import type { Namespace, Teardown } from "./netns.js";
import { bridgeInto } from "./ns-bridge.js";
import { poll } from "./poll.js";

export interface PrometheusOptions {
  /** The namespace to run in; its loopback is where `targets` are. */
  readonly ns: Namespace;
  /** `host:port` of each /metrics endpoint, scraped as job "keepalive-proxy". */
  readonly targets: readonly string[];
  /** Scrape and rule evaluation interval (default 1s). */
  readonly interval?: string;
  /** Rule files to load (absolute paths). */
  readonly ruleFiles?: readonly string[];
  /** A file holding the admin token: scrapes send `Authorization: Bearer <its content>`. */
  readonly credentialsFile?: string;
}

/** One series of an instant query's answer. */
export interface VectorSample {
  readonly metric: Readonly<Record<string, string>>;
  readonly value: number;
}

interface QueryResponse {
  readonly status: string;
  readonly error?: string;
  readonly data?: { readonly resultType: string; readonly result: { metric: Record<string, string>; value: [number, string] }[] };
}

/** A running Prometheus. */
export class PrometheusProcess {
  /** `127.0.0.1:port` it listens on inside its namespace. */
  readonly address: string;
  /** The Unix socket that leads to `address`. */
  readonly #api: string;
  readonly #stderr: () => string;

  private constructor(address: string, api: string, stderr: () => string) {
    this.address = address;
    this.#api = api;
    this.#stderr = stderr;
  }

  /**
   * Writes the config, starts `prometheus` in `ns` on 127.0.0.1:0 and resolves
   * once its `Listening on` line names the port. Its kill and the removal of
   * its files are registered with `teardown` before it starts.
   */
  static async start(teardown: Teardown, options: PrometheusOptions): Promise<PrometheusProcess> {
    const dir = mkdtempSync(join(tmpdir(), "kp-prometheus-"));
    teardown.defer(() => rmSync(dir, { recursive: true, force: true }));
    const interval = options.interval ?? "1s";
    const config = {
      global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
      rule_files: [...(options.ruleFiles ?? [])],
      scrape_configs: [
        {
          job_name: "keepalive-proxy",
          static_configs: [{ targets: [...options.targets] }],
          ...(options.credentialsFile === undefined ? {} : { authorization: { type: "Bearer", credentials_file: options.credentialsFile } }),
        },
      ],
    };
    const configFile = join(dir, "prometheus.yml");
    writeFileSync(configFile, stringify(config));
    const child = spawn(
      "ip",
      [
        "netns",
        "exec",
        options.ns.name,
        "prometheus",
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        "--web.listen-address=127.0.0.1:0",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    teardown.defer(() => stop(child));
    let stderr = "";
    const listening = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`prometheus did not log "Listening on" within 20 s:\n${stderr.slice(-3000)}`)), 20_000);
      child.stderr.setEncoding("utf8").on("data", (s: string) => {
        stderr += s;
        // level=info ... msg="Listening on" address=127.0.0.1:41235
        const m = /msg="Listening on" address=(\S+)/.exec(stderr);
        if (m?.[1]) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.once("close", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`prometheus exited (${code ?? signal}) before listening:\n${stderr.slice(-3000)}`));
      });
    });
    child.stdout.resume();
    const address = await listening;
    const port = Number(address.slice(address.lastIndexOf(":") + 1));
    const api = await bridgeInto(options.ns, teardown, "127.0.0.1", port);
    return new PrometheusProcess(address, api, () => stderr);
  }

  /** GET on Prometheus' HTTP API (`/api/v1/...`), parsed. */
  async api<T>(path: string): Promise<T> {
    const res = await httpGet({ socketPath: this.#api }, path);
    if (res.status !== 200) throw new Error(`prometheus ${path} answered ${res.status}: ${res.body}`);
    return JSON.parse(res.body) as T;
  }

  /** An instant query. */
  async query(promql: string): Promise<VectorSample[]> {
    const body = await this.api<QueryResponse>(`/api/v1/query?query=${encodeURIComponent(promql)}`);
    if (body.status !== "success" || body.data === undefined) throw new Error(`query ${promql} failed: ${body.error ?? JSON.stringify(body)}`);
    return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  }

  /**
   * Polls an instant query until one series satisfies `pred`, and resolves
   * with that series. Prometheus scrapes once per interval and its first
   * scrape comes a few seconds after start, so this is how a test waits.
   */
  waitFor(promql: string, pred: (s: VectorSample) => boolean, timeoutMs: number): Promise<VectorSample> {
    let last: VectorSample[] = [];
    return poll(
      async () => {
        last = await this.query(promql);
        return last.find(pred);
      },
      timeoutMs,
      `${promql} to match in prometheus`,
      250,
    ).catch((error: unknown) => {
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(`${message}\nlast answer: ${JSON.stringify(last)}\nprometheus log:\n${this.#stderr().slice(-2000)}`);
    });
  }
}

/** SIGTERM, then SIGKILL after 3 s; resolves once it has exited. */
async function stop(child: ChildProcessWithoutNullStreams | ReturnType<typeof spawn>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3_000);
  await exited;
  clearTimeout(timer);
}
