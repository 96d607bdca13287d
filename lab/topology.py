"""Build and tear down the lab: four namespaces joined by veth pairs,

    client (10.77.0.2) --- censor --- foreign  (10.77.1.0/24: messenger, media, neutral,
                             |                   control resolver, proxy)
                             +------- domestic (10.77.2.0/24: domestic site, ISP resolver,
                                                blockpage)

a CA and certificates, and the two server processes. `down` is idempotent and removes only
what `up` made: its namespaces, the processes inside them, /etc/netns/<client>, its state."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trustme

from lab import net
from lab.net import Lab, run

SERVER_START_TIMEOUT = 20.0
STATE_MARKER = ".rxlab-state"
# Links inside the namespaces; the names only need to be unique per namespace.
CLIENT_IF, CENSOR_CLIENT_IF = "eth0", "toclient"
CENSOR_FOREIGN_IF, CENSOR_DOMESTIC_IF = "toforeign", "todomestic"


def _sysctl(netns: str, key: str, value: str, check: bool = True) -> None:
    # Through /proc rather than sysctl(8), which minimal images lack (procps); /proc/sys/net
    # as seen from inside the namespace is the namespace's own.
    run(["sh", "-c", f"echo {value} > /proc/sys/{key}"], netns=netns, check=check)


def _link(lab: Lab, netns: str, name: str, peer_netns: str, peer: str) -> None:
    run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer, "netns", peer_netns],
        netns=netns)  # fmt: skip
    # Segmentation offloads would let the censor see 64 KB super-packets: tc could not shape
    # them at 128 kbit/s and connbytes would count in jumps. Real links carry real packets.
    for ns, dev in ((netns, name), (peer_netns, peer)):
        for knob in ("gso_max_size", "gro_max_size"):  # the latter is newer: best effort
            run(["ip", "link", "set", dev, knob, "1500"], netns=ns, check=False)


def _side(lab: Lab, netns: str, gateway: str, addresses: tuple[str, ...]) -> None:
    for address in addresses:
        run(["ip", "addr", "add", f"{address}/24", "dev", "eth0"], netns=netns)
    run(["ip", "link", "set", "eth0", "up"], netns=netns)
    run(["ip", "route", "add", "default", "via", gateway], netns=netns)


def build_network(lab: Lab) -> None:
    for netns in lab.namespaces:
        run(["ip", "netns", "add", netns])
        run(["ip", "link", "set", "lo", "up"], netns=netns)
        # IPv4 only: the lab has no IPv6 routes, and DAD would only slow link setup.
        _sysctl(netns, "net/ipv6/conf/all/disable_ipv6", "1", check=False)
    _link(lab, lab.client, CLIENT_IF, lab.censor, CENSOR_CLIENT_IF)
    _link(lab, lab.foreign, "eth0", lab.censor, CENSOR_FOREIGN_IF)
    _link(lab, lab.domestic, "eth0", lab.censor, CENSOR_DOMESTIC_IF)
    for dev, address in (
        (CENSOR_CLIENT_IF, net.CENSOR_CLIENT_SIDE),
        (CENSOR_FOREIGN_IF, net.CENSOR_FOREIGN_SIDE),
        (CENSOR_DOMESTIC_IF, net.CENSOR_DOMESTIC_SIDE),
    ):
        run(["ip", "addr", "add", f"{address}/24", "dev", dev], netns=lab.censor)
        run(["ip", "link", "set", dev, "up"], netns=lab.censor)
    _sysctl(lab.censor, "net/ipv4/ip_forward", "1")
    # The kernel rate-limits the ICMP errors it sends (1/s per destination after a burst of
    # 6); a censor's injected unreachables are not, and the limit would turn an ICMP
    # rejection into a silent drop for most of the client's probes.
    _sysctl(lab.censor, "net/ipv4/icmp_ratelimit", "0")
    _side(lab, lab.client, net.CENSOR_CLIENT_SIDE, (net.CLIENT,))
    _side(lab, lab.foreign, net.CENSOR_FOREIGN_SIDE, net.FOREIGN_HOSTS)
    _side(lab, lab.domestic, net.CENSOR_DOMESTIC_SIDE, net.DOMESTIC_HOSTS)
    # `ip netns exec` bind-mounts /etc/netns/NAME/* over /etc: the client's system resolver
    # is the ISP's, as on a real access network.
    etc = Path("/etc/netns") / lab.client
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(f"nameserver {net.ISP_DNS}\noptions timeout:1 attempts:1\n")


def make_certificates(lab: Lab) -> None:
    """A lab root CA (what clients trust) and an intermediate that signs the servers' leaves,
    so that servers send a chain of realistic size (a QUIC server's first flight then spans
    several datagrams, as on the internet): one leaf for every lab site (and the control
    resolver's IP, which DoH and DoT are verified against), one for the blockpage host."""
    root = trustme.CA(organization_name="reachability lab CA")
    root.cert_pem.write_to_path(str(lab.path("ca.pem")))
    authority = root.create_child_ca()
    for name, identities in (
        ("server", net.SERVER_NAMES),
        ("blockpage", ("blockpage.domestic.lab",)),
    ):
        leaf = authority.issue_cert(*identities)
        with open(lab.path(f"{name}.pem"), "wb") as handle:
            for blob in leaf.cert_chain_pems:
                handle.write(blob.bytes())
        leaf.private_key_pem.write_to_path(str(lab.path(f"{name}.key")))


def start_servers(lab: Lab) -> None:
    env = {**os.environ, "PYTHONPATH": str(net.REPO)}
    for role, netns in (("foreign", lab.foreign), ("domestic", lab.domestic)):
        log = lab.path(f"{role}.log").open("wb")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "lab.servers", role,
             "--state", str(lab.state)],
            cwd=net.REPO, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
        lab.path(f"{role}.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    info: dict[str, Any] = {}
    for role in ("foreign", "domestic"):
        while True:
            try:
                reply = control(lab, role, {"op": "ping"})
                info.update({k: v for k, v in reply.items() if k.endswith("_port")})
                break
            except OSError:
                if time.monotonic() > deadline:
                    log_text = lab.path(f"{role}.log").read_text(errors="replace")
                    raise RuntimeError(f"lab {role} servers did not start:\n{log_text}") from None
                time.sleep(0.1)
    lab.path("ports.json").write_text(json.dumps(info))


def control(lab: Lab, role: str, request: dict[str, Any]) -> dict[str, Any]:
    """One command to a server process; raises OSError if it is not (yet) listening."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(lab.path(f"{role}.sock")))
        sock.sendall(json.dumps(request).encode() + b"\n")
        reply = sock.makefile("rb").readline()
    answer: dict[str, Any] = json.loads(reply)
    if not answer.get("ok"):
        raise RuntimeError(f"lab {role} servers refused {request}: {answer}")
    return answer


def up(lab: Lab) -> None:
    """Build the lab from nothing (an old one with the same prefix is torn down first)."""
    down(lab)
    lab.state.mkdir(parents=True, exist_ok=True)
    lab.path(STATE_MARKER).write_text("made by python -m lab up; removed by python -m lab down\n")
    try:
        build_network(lab)
        make_certificates(lab)
        start_servers(lab)
    except BaseException:
        down(lab)
        raise


def _pids(netns: str) -> list[int]:
    out = run(["ip", "netns", "pids", netns], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def _started_by(lab: Lab, pid: int) -> bool:
    """Whether `pid` is still a process of this lab: every one it starts names its state
    directory on the command line. A pid file outlives its process, and the pid may since
    belong to something else."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(lab.state).encode() in cmdline


def _kill(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop_processes(lab: Lab, namespaces: set[str]) -> None:
    """TERM, then KILL, every process the lab started: those in its pid files and whatever
    still runs inside its namespaces (only the lab puts processes there)."""
    pids: list[int] = []
    for pidfile in lab.state.glob("*.pid") if lab.state.exists() else ():
        with contextlib.suppress(ValueError, OSError):
            pid = int(pidfile.read_text())
            if _started_by(lab, pid):
                pids.append(pid)
        pidfile.unlink(missing_ok=True)
    for netns in namespaces:
        pids += _pids(netns)
    _kill(pids, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [p for ns in namespaces for p in _pids(ns)]
        if not left:
            return
        time.sleep(0.05)
    _kill([p for ns in namespaces for p in _pids(ns)], signal.SIGKILL)


def down(lab: Lab) -> None:
    ours = set(lab.namespaces) & net.existing_namespaces()
    stop_processes(lab, ours)
    for netns in ours:
        run(["ip", "netns", "del", netns], check=False)
    shutil.rmtree(Path("/etc/netns") / lab.client, ignore_errors=True)
    # Only a directory that `up` made: RXLAB_STATE may point anywhere.
    if lab.path(STATE_MARKER).exists():
        shutil.rmtree(lab.state, ignore_errors=True)


def is_up(lab: Lab) -> bool:
    return set(lab.namespaces) <= net.existing_namespaces()
