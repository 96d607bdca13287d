#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine, as root: installs what the tests need
# (the DNS, TLS, HTTP, STUN and QUIC peers are the tests' own; Prometheus, promtool,
# Alertmanager, iptables, tc, shellcheck and systemd-analyze come from Debian), checks style
# and types, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(prometheus prometheus-alertmanager iptables iproute2 shellcheck systemd)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'

ruff check exporter tests lab benchmarks
ruff format --check exporter tests lab benchmarks
mypy exporter

python3 -m pytest -q -p no:cacheprovider "$@"
