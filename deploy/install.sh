#!/usr/bin/env bash
# Install or upgrade reachability_exporter on Debian or Ubuntu, from this source tree, and
# start it (as root):
#   deploy/install.sh                 # install, enable and (re)start the service
#   deploy/install.sh --foreground    # install, then run it in this terminal instead
#
#   /opt/reachability-exporter/             a virtualenv with the package
#   /opt/reachability-exporter/share/       dashboards, rules and example configs
#   /etc/reachability-exporter/config.yaml  the configuration (kept if it already exists)
#   /etc/default/reachability-exporter      the flags: LISTEN_ADDRESS (127.0.0.1:9869), ARGS
#   /etc/systemd/system/reachability-exporter.service
#
# Only Python 3 needs to be there: the Python venv module and CA certificates are
# apt-installed when missing (Debian and Ubuntu ship python3 without venv, and refuse pip
# installs into the system interpreter). Running it again upgrades the package and the unit
# and restarts the service; it never overwrites config.yaml or the flags file. Options:
#   --foreground  do not use systemd: run the exporter in the foreground, as user nobody,
#                 with the unit's flags (for containers and chroots, where systemd is not
#                 running; Ctrl-C stops it)
#   --no-apt      do not apt-get anything (the venv module is already there)
#   --no-start    do not enable or restart the service
# DESTDIR=/some/dir stages everything under that directory instead of / (implies --no-apt
# and --no-start; --foreground then runs the staged copy as the current user; the virtualenv
# only works at the path where it was created, so this is for tests, not for packages).
set -euo pipefail

prefix=/opt/reachability-exporter
confdir=/etc/reachability-exporter
defaults=/etc/default/reachability-exporter
unitdir=/etc/systemd/system
unit=reachability-exporter.service
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
destdir=${DESTDIR:-}
python=${PYTHON:-python3}
use_apt=yes
start=yes
foreground=no

say() { echo "install.sh: $*"; }

for arg in "$@"; do
    case $arg in
        --foreground) foreground=yes ;;
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
    echo "install.sh: run as root (sudo $0), or set DESTDIR to stage into a directory" >&2
    exit 2
fi

if [[ $use_apt == yes ]]; then
    missing=()
    command -v "$python" >/dev/null || missing+=(python3)
    # Debian splits ensurepip (which `python3 -m venv` needs) out of python3 into python3-venv.
    "$python" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    # The probes verify certificates against the system roots.
    [[ -e /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
    if ((${#missing[@]})); then
        say "installing ${missing[*]} with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        # A fresh machine's package lists may be missing or stale.
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
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
say "installing the package into $prefix (pip, from the package index)"
# --upgrade reinstalls this tree's version even when the version number did not change.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$stage"

install -d -m 0755 "$destdir$confdir"
config=$destdir$confdir/config.yaml
if [[ ! -e $config ]]; then
    # World-readable: the service runs as a dynamic user that owns nothing in /etc.
    install -m 0644 "$src/config.yaml" "$config"
    say "installed the example configuration $confdir/config.yaml; edit it"
fi
if [[ ! -e $destdir$defaults ]]; then
    install -D -m 0644 "$src/deploy/default/reachability-exporter" "$destdir$defaults"
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
install -m 0644 "$src"/deploy/web-config.example.yml "$share/"
install -m 0644 "$src"/deploy/grafana/provisioning/datasources/*.yml \
    "$share/grafana/provisioning/datasources/"
install -m 0644 "$src"/deploy/grafana/provisioning/dashboards/*.yml \
    "$share/grafana/provisioning/dashboards/"

if [[ $foreground == yes ]]; then
    # The same flags as the unit: its defaults, then the flags file.
    LISTEN_ADDRESS=127.0.0.1:9869
    ARGS=""
    # shellcheck disable=SC1090,SC1091 # read at run time, from the installed copy
    . "$destdir$defaults"
    run=("$venv/bin/reachability-exporter" --config.file="$config"
        --web.listen-address="$LISTEN_ADDRESS")
    # ARGS is split into words, as systemd splits $ARGS.
    read -r -a extra <<<"$ARGS"
    run+=("${extra[@]}")
    # No probe needs a privilege; the unit runs it as a dynamic user, here nobody stands in.
    as_nobody=no
    if [[ -z $destdir && $EUID -eq 0 ]] && command -v setpriv >/dev/null; then
        as_nobody=yes
    fi
    # Where the unit keeps state (its StateDirectory), for versions that keep any.
    if "${run[0]}" --help | grep -q -- --storage.path; then
        state=$destdir/var/lib/reachability-exporter
        install -d -m 0700 "$state"
        [[ $as_nobody == no ]] || chown nobody:nogroup "$state"
        run+=(--storage.path="$state")
    fi
    if [[ $as_nobody == yes ]]; then
        run=(setpriv --reuid=nobody --regid=nogroup --clear-groups -- "${run[@]}")
    fi
    say "running in the foreground: metrics on http://$LISTEN_ADDRESS/metrics (Ctrl-C stops)"
    rm -rf "$stage"
    trap - EXIT
    cd /
    exec "${run[@]}"
fi

if [[ $start == yes ]]; then
    if [[ -d /run/systemd/system ]]; then
        systemctl daemon-reload
        systemctl enable --quiet "$unit"
        # restart, not reload: an upgrade replaces the code, not only the configuration.
        systemctl restart "$unit"
        # shellcheck disable=SC1090,SC1091 # read at run time, from the installed copy
        . "$defaults"
        say "$unit (re)started; metrics on http://${LISTEN_ADDRESS:-127.0.0.1:9869}/metrics"
    else
        say "systemd is not running here (a container or chroot?), so $unit was installed" \
            "but not started. Run it in the foreground instead: $0 --foreground"
    fi
fi
