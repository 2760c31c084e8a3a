// TLS peers for the TLS tests: Node TLS clients (for byte-exact transfers and
// half-close), and third-party programs (openssl s_client / s_server,
// stunnel, curl) run as real processes and stopped when the test finishes.

import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { join } from "node:path";
import { type ConnectionOptions, connect as tlsConnect, type TLSSocket } from "node:tls";
import { onTestFinished } from "vitest";
import type { CertFiles } from "./tls-certs.js";

/** Connects a half-open Node TLS client to 127.0.0.1:port, trusting `ca`; destroyed when the test finishes. */
export async function connectTlsClient(port: number, ca: string, clientCert?: CertFiles): Promise<TLSSocket> {
  // allowHalfOpen is honoured by tls.connect (it makes the TCP socket) though its options type omits it.
  const options: ConnectionOptions & { allowHalfOpen: boolean } = {
    host: "127.0.0.1",
    port,
    servername: "localhost",
    ca: readFileSync(ca),
    allowHalfOpen: true,
    ...(clientCert ? { cert: readFileSync(clientCert.cert), key: readFileSync(clientCert.key) } : {}),
  };
  const socket = tlsConnect(options);
  onTestFinished(() => {
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("secureConnect", resolve);
    socket.once("error", reject);
  });
  return socket;
}

/** A port free on 127.0.0.1 now, for programs that cannot be told port 0. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts a long-running program, stopped (SIGKILL) when the test finishes; `ready` polls its port. */
export function startProgram(argv: readonly string[]): ChildProcess & { output(): string } {
  const [cmd, ...args] = argv;
  const child = spawn(cmd as string, args, { stdio: ["pipe", "pipe", "pipe"] });
  let output = "";
  child.stdout?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stdin?.on("error", () => undefined);
  onTestFinished(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  return Object.assign(child, { output: () => output });
}

/**
 * stunnel in the foreground: `client` true originates TLS (plaintext in,
 * TLS out), false terminates it. Returns its accept port once it listens.
 */
export async function startStunnel(
  dir: string,
  options: { client: boolean; connectPort: number; cert?: CertFiles; ca?: string; name: string },
): Promise<number> {
  const port = await freePort();
  const conf = [
    "foreground = yes",
    "pid =",
    "debug = 5",
    `[${options.name}]`,
    `client = ${options.client ? "yes" : "no"}`,
    `accept = 127.0.0.1:${port}`,
    `connect = 127.0.0.1:${options.connectPort}`,
    ...(options.cert ? [`cert = ${options.cert.cert}`, `key = ${options.cert.key}`] : []),
    ...(options.ca ? [`CAfile = ${options.ca}`, "verifyChain = yes", "checkHost = localhost", "sni = localhost"] : []),
  ].join("\n");
  const file = join(dir, `stunnel-${options.name}.conf`);
  writeFileSync(file, `${conf}\n`);
  const child = startProgram(["stunnel4", file]);
  // Not probed with a connect: in client mode that would open a session through the proxy under test.
  await waitForOutput(child.output, /Configuration successful/, 10_000);
  return port;
}

/** Polls a program's output until it matches. */
export async function waitForOutput(output: () => string, pattern: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(output())) {
    if (Date.now() > deadline) throw new Error(`no ${pattern} after ${timeoutMs}ms; output:\n${output()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Polls until something accepts on 127.0.0.1:port. */
export async function waitForPort(port: number, output: () => string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const { connect } = await import("node:net");
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: "127.0.0.1", port });
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port} after ${timeoutMs}ms; output:\n${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
