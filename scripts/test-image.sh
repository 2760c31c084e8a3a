#!/usr/bin/env bash
# The container image test (test/image/): builds the image from the Dockerfile
# with podman (--pull=never) and runs it. Needs root (rootful podman) and the
# node:24-bookworm-slim base image. Where no container registry is reachable,
# ../shared/tools/local-base-images.sh installs podman and builds a stand-in for
# that image (a minute the first time, a second after); elsewhere pull it once:
#   podman pull docker.io/library/node:24-bookworm-slim
set -euo pipefail
cd "$(dirname "$0")/.."
base_images=../shared/tools/local-base-images.sh
if [ -f "$base_images" ]; then
  bash "$base_images" 24
elif ! podman image exists docker.io/library/node:24-bookworm-slim; then
  echo "test-image: no node:24-bookworm-slim image: podman pull docker.io/library/node:24-bookworm-slim" >&2
  exit 1
fi
exec node node_modules/vitest/vitest.mjs run --config test/image/vitest.config.ts "$@"
