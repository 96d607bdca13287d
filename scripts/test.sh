#!/usr/bin/env bash
# The whole test suite, on a fresh Debian or Ubuntu machine, as root: installs what the tests
# need (the DNS, TLS, HTTP, STUN and QUIC peers are the tests' own; Prometheus, promtool,
# Alertmanager, iptables, tc, shellcheck, systemd-analyze and chromium come from Debian),
# makes a virtualenv in .venv/ with the package and its test tools, checks style and types,
# then runs every test. Arguments go to pytest: `bash scripts/test.sh tests/test_cli.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

# python3-venv: Debian and Ubuntu ship python3 without ensurepip, and refuse pip installs
# into the system interpreter (PEP 668), so everything Python goes into .venv/.
# chromium: the status page's tests run it headless (driven by the playwright package).
# openssl: the trust tests name a root by its subject hash, as /etc/ssl/certs does.
apt_packages=(python3-venv ca-certificates openssl git prometheus prometheus-alertmanager
    iptables iproute2 shellcheck systemd chromium)
missing=()
for package in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "test.sh: installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv=.venv
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
# The tests start `python3`, ruff and mypy by name: the venv's.
PATH="$PWD/$venv/bin:$PATH"
export PATH

ruff check exporter tests lab benchmarks peers
ruff format --check exporter tests lab benchmarks peers
mypy exporter

python -m pytest -q -p no:cacheprovider "$@"
