"""The lab's addresses and names, and the few primitives every part of the lab uses: run a
command (in a namespace), and open a socket inside a namespace from this process."""

from __future__ import annotations

import ctypes
import dataclasses
import os
import shlex
import socket
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PREFIX = "rxlab-"
DEFAULT_STATE = Path("/run/rxlab")

# The lab's "internet" is 10.77.0.0/16, private space that exists only inside the lab's own
# namespaces. The exporter's lab config therefore leaves 10.0.0.0/8 out of `bogons`.
CLIENT_NET = "10.77.0"
FOREIGN_NET = "10.77.1"
DOMESTIC_NET = "10.77.2"

CLIENT = f"{CLIENT_NET}.2"
CENSOR_CLIENT_SIDE = f"{CLIENT_NET}.1"
CENSOR_FOREIGN_SIDE = f"{FOREIGN_NET}.1"
CENSOR_DOMESTIC_SIDE = f"{DOMESTIC_NET}.1"

# Foreign hosts, beyond the censor like servers abroad.
MESSENGER = f"{FOREIGN_NET}.10"  # the service under test: web, API, STUN, QUIC
MEDIA = f"{FOREIGN_NET}.11"  # its media CDN: the big file (what freezes and throttling hit)
NEUTRAL = f"{FOREIGN_NET}.20"  # a neutral foreign site: the foreign control
CONTROL_DNS = f"{FOREIGN_NET}.53"  # an honest public resolver with DoH and DoT (like 1.1.1.1)
PROXY = f"{FOREIGN_NET}.80"  # a SOCKS5 and HTTP CONNECT proxy (like a VPN exit)
# A messenger data centre reached by IP, as Telegram's are: plain HTTP on 80 and 443 that
# answers a POST (what OONI's telegram test asks of each DC).
DC = f"{FOREIGN_NET}.30"
# Domestic hosts, also beyond the censor but never blocked (they are on the whitelist).
DOMESTIC = f"{DOMESTIC_NET}.20"  # a domestic site: the domestic control
ISP_DNS = f"{DOMESTIC_NET}.53"  # the ISP's resolver, which obeys the blocking orders
BLOCKPAGE = f"{DOMESTIC_NET}.66"  # the ISP's blockpage server

FOREIGN_HOSTS = (MESSENGER, MEDIA, NEUTRAL, CONTROL_DNS, PROXY, DC)
DOMESTIC_HOSTS = (DOMESTIC, ISP_DNS, BLOCKPAGE)

# Names, as both resolvers know them (the ISP's until a scenario says otherwise).
ZONE = {
    "chat.messenger.lab": MESSENGER,
    "www.messenger.lab": MESSENGER,
    "media.messenger.lab": MEDIA,
    "www.neutral.lab": NEUTRAL,
    "dns.control.lab": CONTROL_DNS,
    "proxy.lab": PROXY,
    "www.domestic.lab": DOMESTIC,
    "blockpage.domestic.lab": BLOCKPAGE,
}
# What the lab CA's main server certificate covers (every server but the blockpage one, which,
# like an ISP's, has a certificate for its own name only).
SERVER_NAMES = (*(n for n in ZONE if n != "blockpage.domestic.lab"), CONTROL_DNS)

PORT_PROXY_SOCKS = 1080
PORT_PROXY_HTTP = 3128
PORT_STUN = 3478
# Blockpage server ports for what an ISP's transparent proxy answers in place of the site.
PORT_BLOCKPAGE_451 = 8451  # "451 Unavailable For Legal Reasons", no blockpage marker
PORT_BLOCKPAGE_GARBAGE = 8099  # bytes that are not HTTP
PORT_BLOCKPAGE_PLAIN = 8080  # plain HTTP where TLS was expected
PORT_BLOCKPAGE_SILENT = 8098  # accepts every connection, reads, never answers
EXPORTER_PORT = 9869


@dataclasses.dataclass(frozen=True)
class Lab:
    """One lab instance: its namespace names and its state directory. Several can coexist
    (the tests use their own prefix), since everything else lives inside the namespaces."""

    prefix: str = DEFAULT_PREFIX
    state: Path = DEFAULT_STATE

    @property
    def client(self) -> str:
        return f"{self.prefix}client"

    @property
    def censor(self) -> str:
        return f"{self.prefix}censor"

    @property
    def foreign(self) -> str:
        return f"{self.prefix}foreign"

    @property
    def domestic(self) -> str:
        return f"{self.prefix}domestic"

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.client, self.censor, self.foreign, self.domestic)

    def path(self, name: str) -> Path:
        return self.state / name

    @classmethod
    def from_env(cls) -> Lab:
        return cls(
            os.environ.get("RXLAB_PREFIX", DEFAULT_PREFIX),
            Path(os.environ.get("RXLAB_STATE", str(DEFAULT_STATE))),
        )


class CommandError(RuntimeError):
    pass


COMMAND_TIMEOUT = 60.0


def run(args: Sequence[str], *, check: bool = True, netns: str | None = None) -> str:
    """Run a command (inside `netns` if given); its stdout, or CommandError with stderr."""
    argv = ["ip", "netns", "exec", netns, *args] if netns else list(args)
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, check=False, timeout=COMMAND_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        # A wedged `ip` or `iptables` must fail the lab, not hang it (and CI) forever.
        raise CommandError(f"{shlex.join(argv)}: no answer in {COMMAND_TIMEOUT:g}s") from None
    if check and proc.returncode != 0:
        raise CommandError(f"{shlex.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def existing_namespaces() -> set[str]:
    out = run(["ip", "netns", "list"], check=False)
    return {line.split()[0] for line in out.splitlines() if line.strip()}


_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def netns_connection(netns: str, address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
    """A TCP connection opened from inside `netns`: the socket keeps the namespace it was made
    in, so this process (in the root namespace) can talk to the lab's exporter directly.
    setns() changes only the calling thread, hence the short-lived thread."""
    box: dict[str, object] = {}

    def connect() -> None:
        try:
            with open(f"/run/netns/{netns}", "rb") as handle:
                if _libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"setns {netns}: {os.strerror(error)}")
            box["sock"] = socket.create_connection(address, timeout=timeout)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=connect, name=f"netns {netns}")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    sock = box["sock"]
    assert isinstance(sock, socket.socket)
    return sock
