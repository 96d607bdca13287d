#!/usr/bin/env bash
# Install or upgrade reachability_exporter on Debian or Ubuntu, from this source tree:
#   sudo deploy/install.sh            # install, enable and (re)start the service
#
#   /opt/reachability-exporter/            a virtualenv with the package
#   /opt/reachability-exporter/share/      dashboards, rules and example configs
#   /etc/reachability-exporter/config.yaml the configuration (kept if it already exists)
#   /etc/systemd/system/reachability-exporter.service
#
# Running it again upgrades the package and the unit and restarts the service; it never
# overwrites an existing config.yaml. Options:
#   --no-apt     do not apt-get the Python runtime (it is already there)
#   --no-start   do not enable or restart the service
# DESTDIR=/some/dir stages everything under that directory instead of / (implies --no-apt
# and --no-start; the virtualenv only works at the path where it was created, so this is for
# tests, not for building packages).
set -euo pipefail

prefix=/opt/reachability-exporter
confdir=/etc/reachability-exporter
unitdir=/etc/systemd/system
unit=reachability-exporter.service
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
destdir=${DESTDIR:-}
python=${PYTHON:-python3}
use_apt=yes
start=yes

for arg in "$@"; do
    case $arg in
        --no-apt) use_apt=no ;;
        --no-start) start=no ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done
if [[ -n $destdir ]]; then
    use_apt=no
    start=no
elif [[ $EUID -ne 0 ]]; then
    echo "install.sh: run as root (or set DESTDIR to stage into a directory)" >&2
    exit 2
fi

if [[ $use_apt == yes ]]; then
    # python3-venv: Debian splits ensurepip out of python3, and without it `venv` fails.
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates
fi

venv=$destdir$prefix
if [[ ! -x $venv/bin/python ]]; then
    "$python" -m venv "$venv"
fi
# Build from a clean copy of the package: an in-tree build would reuse build/ from earlier
# builds, where modules deleted since then linger and get installed again.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -r "$src/pyproject.toml" "$src/README.md" "$src/exporter" "$stage/"
# --upgrade reinstalls this tree's version even when the version number did not change.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$stage"

install -d -m 0755 "$destdir$confdir"
config=$destdir$confdir/config.yaml
if [[ ! -e $config ]]; then
    # World-readable: the service runs as a dynamic user that owns nothing in /etc.
    install -m 0644 "$src/config.yaml" "$config"
    echo "install.sh: installed the example configuration $confdir/config.yaml; edit it"
fi
# Refuse to restart into a configuration the new version rejects.
"$venv/bin/reachability-exporter" --config.check --config.file="$config"

install -D -m 0644 "$src/deploy/systemd/$unit" "$destdir$unitdir/$unit"

share=$destdir$prefix/share
install -d -m 0755 "$share/dashboards" "$share/prometheus" "$share/alertmanager" \
    "$share/grafana/provisioning/datasources" "$share/grafana/provisioning/dashboards"
install -m 0644 "$src"/dashboards/*.json "$share/dashboards/"
install -m 0644 "$src"/deploy/prometheus/*.yml "$share/prometheus/"
install -m 0644 "$src"/deploy/alertmanager/*.yml "$share/alertmanager/"
install -m 0644 "$src"/deploy/grafana/provisioning/datasources/*.yml \
    "$share/grafana/provisioning/datasources/"
install -m 0644 "$src"/deploy/grafana/provisioning/dashboards/*.yml \
    "$share/grafana/provisioning/dashboards/"

if [[ $start == yes ]]; then
    if [[ -d /run/systemd/system ]]; then
        systemctl daemon-reload
        systemctl enable "$unit"
        # restart, not reload: an upgrade replaces the code, not only the configuration.
        systemctl restart "$unit"
        echo "install.sh: $unit (re)started; metrics on http://localhost:9869/metrics"
    else
        echo "install.sh: systemd is not running here; start $unit yourself" >&2
    fi
fi
