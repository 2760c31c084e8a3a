# keepalive-proxy container image.
#
#   podman build --format docker -t keepalive-proxy .     (docker build -t keepalive-proxy . works too)
#   docker run --rm -p 7000:7000 -p 9464:9464 --stop-timeout 40 \
#     -e KEEPALIVE_PROXY_UPSTREAM=db.internal:5432 keepalive-proxy
#
# Config: /etc/keepalive-proxy/keepalive-proxy.yaml (from config/container.yaml);
# mount your own file there, or override single settings with KEEPALIVE_PROXY_*
# variables or flags after the image name (`... keepalive-proxy --log-level debug`,
# `... keepalive-proxy check --connect`).
#
# Stopping: SIGTERM drains live sessions for up to shutdown.drainTimeout (30 s
# by default) and exits 0. Docker and podman send SIGKILL after 10 s unless told
# otherwise, so run with --stop-timeout (compose: stop_grace_period) a little
# longer than the drain timeout.
#
# Both stages build FROM the same official image so the koffi binary that npm
# picks (per platform and libc) matches the runtime.

ARG NODE_IMAGE=node:24-bookworm-slim

# ---------------------------------------------------------------- build stage
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Dependencies first: this layer is reused until package*.json change.
# --ignore-scripts: no dependency needs its install script to build (koffi's
# prebuilt binaries come as optional packages; the `node` devDependency's
# script only fetches a second Node binary for the test suite).
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund --no-update-notifier
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# -------------------------------------------------------------- runtime stage
FROM ${NODE_IMAGE} AS runtime
ARG NODE_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="keepalive-proxy" \
      org.opencontainers.image.description="TCP forwarding proxy that keeps idle connections alive and resets both legs when a peer dies" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="${NODE_IMAGE}"

# A dedicated user with a fixed numeric id: Kubernetes' runAsNonRoot can
# only verify a numeric USER, and the Deployment's runAsUser repeats it.
RUN groupadd --gid 10001 keepalive-proxy \
 && useradd --uid 10001 --gid keepalive-proxy --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin keepalive-proxy

ENV NODE_ENV=production
WORKDIR /app
# Production dependencies only, no install scripts (see the build stage); npm's
# cache and logs are dropped in the same step so they never reach a layer.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund --no-update-notifier \
 && rm -rf /root/.npm
COPY --from=build /app/dist ./dist
COPY config/container.yaml /etc/keepalive-proxy/keepalive-proxy.yaml
ENV KEEPALIVE_PROXY_CONFIG=/etc/keepalive-proxy/keepalive-proxy.yaml

# Fail the build, not the first deploy, if koffi cannot load libc here:
# `check` loads libc through koffi and validates the baked-in config.
RUN node dist/cli.js check > /dev/null

# Everything above stays owned by root and read-only to the proxy.
USER 10001:10001

# 7000: the listener in config/container.yaml; 9464: admin (/healthz /readyz /metrics).
EXPOSE 7000/tcp 9464/tcp

# The proxy handles SIGTERM itself (drain, then exit 0); said explicitly because
# a base image or a later FROM could change it.
STOPSIGNAL SIGTERM

# Slim images have no curl: probe /healthz with node's own fetch. Follows the
# admin address of config/container.yaml; if you move the admin server, pass
# --health-cmd to match (and --no-healthcheck if you turn it off).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9464/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# node directly as PID 1 (not the base image's docker-entrypoint.sh or npm):
# signals reach the proxy, which installs its own SIGTERM/SIGINT/SIGHUP handlers.
ENTRYPOINT ["node", "/app/dist/cli.js"]
CMD []
