#!/usr/bin/env bash
# Runs the whole suite on the machine's Node (20) and on Node 24 LTS from the
# `node` devDependency, so socket options are proven on both. Ends with the
# failed tests of both runs, so a log read from its tail says what failed.
set -euo pipefail
cd "$(dirname "$0")/.."
node20="${npm_node_execpath:-node}"
node24=node_modules/node/bin/node
reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT
status=0
run_suite() { # label node [vitest args...]
  local label=$1 node=$2
  shift 2
  echo "=== suite on $label ==="
  "$node" node_modules/vitest/vitest.mjs run --reporter=default --reporter=json \
    --outputFile.json="$reports/$label.json" "$@" || status=1
}
label20="node-$("$node20" --version)"
label24="node-$("$node24" --version)"
run_suite "$label20" "$node20" "$@"
run_suite "$label24" "$node24" "$@"
echo "=== summary ==="
node scripts/test-summary.mjs "$label20=$reports/$label20.json" "$label24=$reports/$label24.json" || status=1
exit $status
