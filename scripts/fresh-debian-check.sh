#!/usr/bin/env bash
# Checks that the README's quick start works, word for word, on a fresh Debian 12: builds a
# minimal Debian root with debootstrap, adds Python 3 (the only thing the README assumes),
# puts this repository's committed HEAD where `git clone` would, and runs in a chroot the
# commands of the README's quick start block, taken from README.md itself:
#   - the apt-get line of step 0 as written (the clone is done from this checkout instead
#     of the repository URL);
#   - step 1, the install command, as written; without systemd in a chroot it must say so,
#     and `--foreground` (the flag it names) must then start the exporter: the check waits
#     until /metrics answers and stops it;
#   - step 2, the test command, as written, with pytest arguments for a subset of the suite
#     (the lab tests need network namespaces, and the full run takes long); --full runs it
#     all.
# Not run by CI (it downloads a Debian system and takes minutes). As root:
#   scripts/fresh-debian-check.sh [--full] [--reuse] [DIR]     # DIR: /tmp/fresh-debian
# --reuse keeps an existing DIR from an earlier run (skips debootstrap). MIRROR= overrides
# the mirror, which by default is the one in /etc/apt/sources.list.d/.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
full=no
reuse=no
root=/tmp/fresh-debian
for arg in "$@"; do
    case $arg in
        --full) full=yes ;;
        --reuse) reuse=yes ;;
        -*) echo "fresh-debian-check.sh: unknown option $arg" >&2; exit 2 ;;
        *) root=$arg ;;
    esac
done
[[ $EUID -eq 0 ]] || { echo "fresh-debian-check.sh: run as root" >&2; exit 2; }
step() { printf '\n=== %s\n' "$*"; }

# The tests that need no network namespace and cover what the quick start promises.
subset=(tests/test_cli.py tests/test_deploy.py tests/test_config.py tests/test_dashboards.py)

mirror=${MIRROR:-$(awk '$1 == "URIs:" && $2 !~ /security/ {print $2; exit}' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}

if [[ $reuse == no || ! -x $root/usr/bin/apt-get ]]; then
    command -v debootstrap >/dev/null || apt-get install -y debootstrap
    rm -rf "$root"
    step "debootstrap --variant=minbase bookworm $root $mirror"
    debootstrap --variant=minbase bookworm "$root" "$mirror"
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"

mounted=()
mount_in() {
    mount "$@" && mounted=("${*: -1}" "${mounted[@]}")
}
cleanup() {
    [[ -z ${server_pid:-} ]] || kill "$server_pid" 2>/dev/null || true
    for point in "${mounted[@]}"; do umount -l "$point" || true; done
}
trap cleanup EXIT
# The root a mount point of its own: without it `unshare --mount` in the chroot (the tests'
# private /etc and /proc) fails with "cannot change root filesystem propagation".
mount_in --bind "$root" "$root"
mount_in -t proc proc "$root/proc"
mount_in -t sysfs sysfs "$root/sys"
mount_in --bind /dev "$root/dev"
mount_in --bind /dev/pts "$root/dev/pts"
in_root() { chroot "$root" env -i HOME=/root TERM=dumb PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

step "the premise: Debian 12 with Python 3 and nothing else"
in_root apt-get install -y -qq python3 >/dev/null
# shellcheck disable=SC2016 # expanded inside the chroot
in_root sh -c '. /etc/os-release; echo "$PRETTY_NAME, $(python3 --version)"'
if in_root python3 -c 'import ensurepip' 2>/dev/null; then echo "(venv is already there)"; fi

# Not a README step: this machine's own network set-up. Where its HTTPS goes through an
# intercepting proxy, the proxy's CA (in /usr/local/share/ca-certificates) must be trusted
# in the chroot too, by the system store and by pip (whose own bundle does not read it).
extra_cas=(/usr/local/share/ca-certificates/*.crt)
if [[ -e ${extra_cas[0]} ]]; then
    step "this machine's extra CAs into the chroot: ${extra_cas[*]##*/}"
    in_root apt-get install -y -qq ca-certificates >/dev/null
    cp "${extra_cas[@]}" "$root/usr/local/share/ca-certificates/"
    in_root update-ca-certificates >/dev/null
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"
fi

# The commands of the quick start block: the lines of the first ```sh block after
# "## Quick start" that are not comments.
mapfile -t commands < <(awk '
    /^## Quick start/ {inside = 1; next}
    inside && /^```sh/ {block = 1; next}
    block && /^```/ {exit}
    block && NF && $1 !~ /^#/ {print}
' "$repo/README.md")
printf 'README quick start:\n'
printf '  %s\n' "${commands[@]}"
((${#commands[@]} == 4)) || { echo "expected 4 commands (apt, clone, install, test)" >&2; exit 1; }
[[ ${commands[1]} == "git clone "* ]] || { echo "the second command is not git clone" >&2; exit 1; }
checkout=$(sed -n 's/.*&& cd \(.*\)$/\1/p' <<<"${commands[1]}")

step "0. ${commands[0]}"
in_root bash -c "cd /root && ${commands[0]}"
step "0. git clone (of this checkout's HEAD, $(git -C "$repo" rev-parse --short HEAD)) into /root/$checkout"
rm -rf "${root:?}/root/$checkout"
git clone -q "$repo" "$root/root/$checkout"
git -C "$root/root/$checkout" checkout -q --detach "$(git -C "$repo" rev-parse HEAD)"

step "1. ${commands[2]}"
in_root bash -c "cd /root/$checkout && ${commands[2]}" | tee "$root/tmp/install.log"
grep -q "systemd is not running here" "$root/tmp/install.log" \
    || { echo "install.sh did not say that systemd is not running" >&2; exit 1; }
in_root /opt/reachability-exporter/bin/reachability-exporter --version

step "1. the flag it names: ./deploy/install.sh --foreground (stopped once /metrics answers)"
# The chroot shares this machine's network: another process may hold the default port.
port=9869
if python3 -c "import socket; socket.create_server(('127.0.0.1', $port)).close()" 2>/dev/null; then
    echo "port $port is free"
else
    port=$(python3 -c "import socket; s = socket.create_server(('127.0.0.1', 0)); print(s.getsockname()[1])")
    echo "port 9869 is taken on this machine: LISTEN_ADDRESS=127.0.0.1:$port in /etc/default/reachability-exporter"
    sed -i "s/^LISTEN_ADDRESS=.*/LISTEN_ADDRESS=127.0.0.1:$port/" "$root/etc/default/reachability-exporter"
fi
# exec all the way down (subshell, chroot, env, bash, install.sh, setpriv), so that
# $server_pid is the exporter itself and the kill below reaches it.
(exec chroot "$root" env -i HOME=/root TERM=dumb PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c "cd /root/$checkout && exec ./deploy/install.sh --foreground" \
    >"$root/tmp/foreground.log" 2>&1) &
server_pid=$!
metrics=""
for _ in $(seq 120); do
    if metrics=$(in_root python3 -c "import urllib.request as u; print(u.urlopen('http://127.0.0.1:$port/metrics', timeout=2).read().decode())" 2>/dev/null); then
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 1
done
ps -o user=,args= -p "$server_pid" || true
kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
server_pid=""
head -5 "$root/tmp/foreground.log"
grep -m1 '^reachability_exporter_build_info' <<<"$metrics" \
    || { echo "the foreground exporter never answered /metrics" >&2; exit 1; }

step "2. ${commands[3]}"
if [[ $full == yes ]]; then
    in_root bash -c "cd /root/$checkout && ${commands[3]}"
else
    echo "(with a subset: ${subset[*]})"
    in_root bash -c "cd /root/$checkout && ${commands[3]} ${subset[*]}"
fi
step "the README's quick start works on a fresh Debian 12"
