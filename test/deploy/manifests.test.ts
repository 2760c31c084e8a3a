import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { IServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import type { IDeployment } from "kubernetes-models/apps/v1";
import type { IConfigMap, IContainer, IService } from "kubernetes-models/v1";
import type { IPodDisruptionBudget } from "kubernetes-models/policy/v1";
import { describe, expect, it } from "vitest";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { configSchema } from "../../src/config/schema.js";
import { validateManifest } from "./kubernetes-schema.js";

/**
 * deploy/kubernetes, offline: every manifest against the Kubernetes (and
 * Prometheus Operator) schemas with unknown fields rejected, and the manifests
 * against each other, the Dockerfile and the proxy's own config schema.
 */

const DIR = fileURLToPath(new URL("../../deploy/kubernetes/", import.meta.url));
const DOCKERFILE = fileURLToPath(new URL("../../Dockerfile", import.meta.url));
const CONFIG_KEY = "keepalive-proxy.yaml";

const manifestFiles = readdirSync(DIR)
  .filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml")
  .sort();

/** Every document of every manifest file, parsed. */
function loadManifests(): { file: string; doc: Record<string, unknown> }[] {
  return manifestFiles.flatMap((file) =>
    parseAllDocuments(readFileSync(`${DIR}${file}`, "utf8")).map((d) => {
      if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join("; ")}`);
      return { file, doc: d.toJS() as Record<string, unknown> };
    }),
  );
}

function only<T>(kind: string): T {
  const found = loadManifests().filter((m) => m.doc.kind === kind);
  expect(found, `exactly one ${kind} in deploy/kubernetes`).toHaveLength(1);
  return structuredClone(found[0]?.doc) as T;
}

function proxyContainer(deployment: IDeployment): IContainer {
  const container = deployment.spec?.template.spec?.containers.find((c) => c.name === "keepalive-proxy");
  if (!container) throw new Error("the Deployment has no container named keepalive-proxy");
  return container;
}

/** The proxy's config as the ConfigMap carries it, parsed by the proxy's own schema. */
function embeddedConfig() {
  const text = only<IConfigMap>("ConfigMap").data?.[CONFIG_KEY];
  if (text === undefined) throw new Error(`the ConfigMap has no ${CONFIG_KEY} key`);
  return configSchema.safeParse(parseYaml(text));
}

/** How long the preStop hook pauses before the kubelet sends SIGTERM, in seconds. */
function preStopPauseSeconds(container: IContainer): number {
  const preStop = container.lifecycle?.preStop;
  if (preStop?.sleep) return preStop.sleep.seconds;
  const command = preStop?.exec?.command ?? [];
  if (command.length === 0) return 0;
  expect(command, "a preStop exec hook is a plain `sleep N`").toMatchObject(["sleep", expect.stringMatching(/^\d+$/)]);
  return Number(command[1]);
}

function matches(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  return selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

describe("Kubernetes manifests", () => {
  it.each(manifestFiles)("%s is valid against the Kubernetes schemas, field names included", (file) => {
    const docs = loadManifests().filter((m) => m.file === file);
    expect(docs.length).toBeGreaterThan(0);
    for (const { doc } of docs) expect(validateManifest(doc)).toEqual([]);
  });

  it("has a Deployment, ConfigMap, Service, PodDisruptionBudget and ServiceMonitor, all listed in kustomization.yaml", () => {
    const kinds = loadManifests().map((m) => m.doc.kind);
    expect(kinds.sort()).toEqual(["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceMonitor"]);
    const kustomization = parseYaml(readFileSync(`${DIR}kustomization.yaml`, "utf8")) as { resources: string[] };
    expect([...kustomization.resources].sort()).toEqual(manifestFiles);
  });

  it("embeds a config that the proxy's own schema accepts", () => {
    const result = embeddedConfig();
    expect(result.success, JSON.stringify(result.error?.issues, null, 2)).toBe(true);
  });

  it("gives the pod a termination grace period longer than the preStop pause plus the drain timeout", () => {
    const deployment = only<IDeployment>("Deployment");
    const config = embeddedConfig();
    if (!config.success) throw new Error("the embedded config is invalid");
    const container = proxyContainer(deployment);
    // The drain timeout must come from the ConfigMap alone for this comparison to hold.
    expect(container.args ?? []).not.toContain("--drain-timeout");
    expect((container.env ?? []).map((e) => e.name)).not.toContain("KEEPALIVE_PROXY_DRAIN_TIMEOUT");

    const graceSeconds = deployment.spec?.template.spec?.terminationGracePeriodSeconds ?? 30;
    const drainSeconds = config.data.shutdown.drainTimeout / 1000;
    // The kubelet counts the grace period from the start of preStop; the SIGTERM comes after it.
    const needed = preStopPauseSeconds(container) + drainSeconds;
    expect(graceSeconds).toBeGreaterThan(needed);
    // Room for the resets and the last log lines after the drain timeout.
    expect(graceSeconds - needed).toBeGreaterThanOrEqual(5);
  });

  it("mounts the ConfigMap, whole, where the proxy reads its config", () => {
    const deployment = only<IDeployment>("Deployment");
    const configMap = only<IConfigMap>("ConfigMap");
    const container = proxyContainer(deployment);
    const configPath = container.env?.find((e) => e.name === "KEEPALIVE_PROXY_CONFIG")?.value;
    expect(configPath).toBe(`/etc/keepalive-proxy/${CONFIG_KEY}`);
    // The image's default is the same path.
    expect(readFileSync(DOCKERFILE, "utf8")).toMatch(new RegExp(`^ENV KEEPALIVE_PROXY_CONFIG=${configPath}$`, "m"));

    const volume = deployment.spec?.template.spec?.volumes?.find((v) => v.configMap?.name === configMap.metadata?.name);
    expect(volume, "a volume from the ConfigMap").toBeDefined();
    const mount = container.volumeMounts?.find((m) => m.name === volume?.name);
    expect(mount?.mountPath).toBe("/etc/keepalive-proxy");
    // With subPath the kubelet never updates the file, and SIGHUP would reload the old config.
    expect(mount?.subPath).toBeUndefined();
    expect(mount?.readOnly).toBe(true);
  });

  it("probes /healthz and /readyz on the admin port that the config opens on all pod addresses", () => {
    const config = embeddedConfig();
    if (!config.success) throw new Error("the embedded config is invalid");
    const container = proxyContainer(only<IDeployment>("Deployment"));
    const admin = config.data.admin.listen;
    expect(admin?.host).toBe("0.0.0.0");
    const adminPort = container.ports?.find((p) => p.name === "admin");
    expect(adminPort?.containerPort).toBe(admin?.port);
    expect(container.livenessProbe?.httpGet).toMatchObject({ path: "/healthz", port: "admin" });
    expect(container.readinessProbe?.httpGet).toMatchObject({ path: "/readyz", port: "admin" });
    // Every listener has a container port.
    for (const listener of config.data.listeners) {
      expect(container.ports?.map((p) => p.containerPort)).toContain(listener.listen.port);
    }
  });

  it("routes the Service, the PodDisruptionBudget and the ServiceMonitor to the proxy's pods and ports", () => {
    const deployment = only<IDeployment>("Deployment");
    const service = only<IService>("Service");
    const pdb = only<IPodDisruptionBudget>("PodDisruptionBudget");
    const monitor = only<IServiceMonitor>("ServiceMonitor");
    const podLabels = deployment.spec?.template.metadata?.labels;
    const container = proxyContainer(deployment);

    expect(matches(deployment.spec?.selector.matchLabels, podLabels)).toBe(true);
    expect(matches(service.spec?.selector, podLabels)).toBe(true);
    expect(matches(pdb.spec?.selector?.matchLabels, podLabels)).toBe(true);
    expect(matches(monitor.spec.selector.matchLabels, service.metadata?.labels)).toBe(true);

    const containerPortNames = container.ports?.map((p) => p.name) ?? [];
    for (const port of service.spec?.ports ?? []) expect(containerPortNames).toContain(port.targetPort);
    const servicePortNames = service.spec?.ports?.map((p) => p.name) ?? [];
    for (const endpoint of monitor.spec.endpoints ?? []) {
      expect(servicePortNames).toContain(endpoint.port);
      expect(endpoint.path).toBe("/metrics");
    }
    // deploy/prometheus/alerts.yaml matches job="keepalive-proxy": the ServiceMonitor's
    // job label is the Service's name unless jobLabel says otherwise.
    expect(monitor.spec.jobLabel).toBeUndefined();
    expect(service.metadata?.name).toBe("keepalive-proxy");
  });

  it("protects the admin server with a token from a Secret that the pods mount and the ServiceMonitor sends", () => {
    const config = embeddedConfig();
    if (!config.success) throw config.error;
    const tokenFile = config.data.admin.auth.tokenFile;
    expect(tokenFile, "admin.auth.tokenFile in the ConfigMap").toEqual(expect.stringMatching(/^\//));
    const deployment = only<IDeployment>("Deployment");
    const container = proxyContainer(deployment);
    const mount = container.volumeMounts?.find((m) => tokenFile?.startsWith(`${m.mountPath}/`));
    expect(mount, "a mount holding the token file").toBeDefined();
    const volume = deployment.spec?.template.spec?.volumes?.find((v) => v.name === mount?.name);
    const secretName = volume?.secret?.secretName;
    expect(secretName, "the token's volume is a Secret").toBeDefined();
    const key = tokenFile?.slice((mount?.mountPath.length ?? 0) + 1);
    const endpoint = only<IServiceMonitor>("ServiceMonitor").spec.endpoints?.[0];
    expect(endpoint?.authorization).toEqual({ type: "Bearer", credentials: { name: secretName, key } });
    // The probes need no token: /healthz and /readyz stay open.
    expect([container.livenessProbe?.httpGet?.path, container.readinessProbe?.httpGet?.path]).toEqual(["/healthz", "/readyz"]);
  });

  it("runs the pod as the image's non-root user, read-only, without service-link variables", () => {
    const deployment = only<IDeployment>("Deployment");
    const pod = deployment.spec?.template.spec;
    const container = proxyContainer(deployment);
    const user = /^USER (\d+):(\d+)$/m.exec(readFileSync(DOCKERFILE, "utf8"));
    expect(user, "a numeric USER uid:gid in the Dockerfile").not.toBeNull();

    expect(pod?.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: Number(user?.[1]), runAsGroup: Number(user?.[2]) });
    expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
    // Service links would set KEEPALIVE_PROXY_SERVICE_HOST and the like, which the
    // proxy reads as (unknown) settings and refuses to start.
    expect(pod?.enableServiceLinks).toBe(false);
    expect(container.resources?.requests).toMatchObject({ cpu: expect.anything(), memory: expect.anything() });
    expect(container.resources?.limits).toMatchObject({ memory: expect.anything() });
  });
});

describe("manifest validation", () => {
  const deployment = (): Record<string, unknown> & IDeployment => only("Deployment");

  it("rejects a misspelled optional field that the Kubernetes schemas alone let through", () => {
    const broken = deployment();
    const container = proxyContainer(broken) as IContainer & Record<string, unknown>;
    container.readinessProbee = container.readinessProbe;
    delete container.readinessProbe;
    expect(validateManifest(broken)).toEqual([
      { path: "spec.template.spec.containers[0].readinessProbee", message: expect.stringContaining('did you mean "readinessProbe"?') },
    ]);
  });

  it("rejects misspelled fields at the top, deep in the pod spec, and in a ServiceMonitor", () => {
    const broken = deployment();
    broken.metdata = broken.metadata;
    delete broken.metadata;
    (broken.spec?.template.spec?.securityContext as Record<string, unknown>).runAsNonroot = true;
    expect(
      validateManifest(broken)
        .map((p) => p.path)
        .sort(),
    ).toEqual(["metdata", "spec.template.spec.securityContext.runAsNonroot"]);

    const monitor = only<IServiceMonitor>("ServiceMonitor");
    (monitor.spec.endpoints?.[0] as Record<string, unknown>).intervall = "30s";
    expect(validateManifest(monitor).map((p) => p.path)).toEqual(["spec.endpoints[0].intervall"]);
  });

  it("rejects a missing required field and a wrong type", () => {
    const broken = deployment();
    const spec = broken.spec as unknown as Record<string, unknown>;
    delete spec.selector;
    spec.replicas = "two";
    const container = proxyContainer(broken) as Partial<IContainer>;
    delete container.name;
    expect(validateManifest(broken)).toEqual(
      expect.arrayContaining([
        { path: "spec", message: "must have required property selector" },
        { path: "spec.replicas", message: "must be integer" },
        { path: "spec.template.spec.containers[0]", message: "must have required property name" },
      ]),
    );
  });

  it("rejects a kind it has no schema for", () => {
    expect(validateManifest({ apiVersion: "apps/v1", kind: "Deploymnet", metadata: { name: "x" } })).toEqual([
      { path: "", message: expect.stringContaining("unsupported apiVersion/kind apps/v1 Deploymnet") },
    ]);
  });

  it("accepts any key in maps: labels, annotations, ConfigMap data", () => {
    const valid = deployment();
    valid.metadata = { ...valid.metadata, labels: { "example.com/team": "network" }, annotations: { "anything.example/goes": "yes" } };
    expect(validateManifest(valid)).toEqual([]);
    const configMap = only<IConfigMap>("ConfigMap");
    configMap.data = { ...configMap.data, "other-file.yaml": "x: 1" };
    expect(validateManifest(configMap)).toEqual([]);
  });
});
