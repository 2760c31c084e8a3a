#!/usr/bin/env bash
# Runs the whole suite on the machine's Node (20) and on Node 24 LTS from the
# `node` devDependency, so socket options are proven on both.
set -euo pipefail
cd "$(dirname "$0")/.."
node24=node_modules/node/bin/node
status=0
echo "=== suite on $("${npm_node_execpath:-node}" --version) ==="
"${npm_node_execpath:-node}" node_modules/vitest/vitest.mjs run "$@" || status=1
echo "=== suite on $("$node24" --version) ==="
"$node24" node_modules/vitest/vitest.mjs run "$@" || status=1
exit $status
