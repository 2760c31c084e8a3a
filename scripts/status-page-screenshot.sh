#!/usr/bin/env bash
# Regenerates docs/status-page.png: runs the browser test (Debian's Chromium,
# playwright-core, network namespaces; needs root and
# scripts/install-system-deps.sh), which saves its screenshot while the
# upstream's keepalive probes go unanswered.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run --silent build
STATUS_PAGE_SCREENSHOT="$PWD/docs/status-page.png" "${NODE:-node}" node_modules/vitest/vitest.mjs run test/browser/status-page.test.ts
echo "wrote docs/status-page.png"
