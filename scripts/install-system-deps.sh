#!/usr/bin/env bash
# Debian packages the test suite needs: iproute2 (ip netns, veth, ss, nstat), procps (sysctl),
# nftables (making a host vanish), conntrack tools, prometheus + promtool
# (the metrics tests scrape the proxy with a real Prometheus), haproxy (the
# reference PROXY protocol peer), systemd (systemd-analyze verify checks the
# unit in deploy/systemd; prlimit comes with util-linux, always installed).
# openssl, stunnel4, socat and curl are the third-party TLS peers of the TLS tests (test/tls);
# chromium: the status page test drives it with playwright-core, which never
# downloads a browser of its own.
# Idempotent; needs root.
set -euo pipefail
packages=(iproute2 nftables conntrack procps prometheus haproxy systemd tcpdump openssl stunnel4 socat curl chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
