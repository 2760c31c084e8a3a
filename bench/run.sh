#!/usr/bin/env bash
# The benchmark's one command (npm run bench): installs HAProxy, nginx with the
# stream module, socat, stunnel and OpenSSL from Debian when missing, compiles the load
# generator, builds the proxy, raises the fd limit and runs bench/run.mjs,
# which writes bench/results/latest.json and bench/RESULTS.md.
#
#   bash bench/run.sh            full run: 5 rounds, 2 s per measurement (~15 min)
#   bash bench/run.sh --quick    smoke test: 1 round, 1 s per measurement
#   bash bench/run.sh --targets haproxy,kp --scenarios rr50,cps   (see run.mjs for all options)
#   bash bench/run.sh profile --scenario rr50    node --cpu-prof on the proxy under one scenario
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v socat >/dev/null || need+=(socat)
command -v nginx >/dev/null || need+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
# The TLS scenarios: stunnel as a target, openssl for the run's certificate,
# libssl-dev for the load generator's TLS client.
command -v stunnel >/dev/null || need+=(stunnel4)
command -v openssl >/dev/null || need+=(openssl)
[ -e /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "bench: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # RUNLEVEL=1: the nginx package must not start a system nginx on port 80.
  $SUDO env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

mkdir -p bench/.build
gcc -O2 -Wall -Wextra -std=gnu11 -pthread -o bench/.build/kpbench bench/kpbench.c -lssl -lcrypto

[ -d node_modules ] || npm ci --no-audit --no-fund >&2
npm run --silent build

# 10,000 idle proxied connections need more than 20,000 fds in one proxy
# process. Raise the soft limit as far as the hard one allows (and the hard
# one too where we may); run.mjs sizes the idle scenario to what it gets.
ulimit -Hn 1048576 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true

# One Node for the proxy and the naive pipe however this is started: Node 24
# from the `node` devDependency (the container image's major), unless
# BENCH_NODE names another. A bare `node` would be the machine's Node 20
# from a shell but Node 24 under `npm run` (npm puts node_modules/.bin first).
bench_node=${BENCH_NODE:-node_modules/node/bin/node}
[ -x "$bench_node" ] || bench_node=$(command -v node)

if [ "${1:-}" = profile ]; then
  shift
  exec "$bench_node" bench/profile.mjs "$@"
fi
exec "$bench_node" bench/run.mjs "$@"
