"""The censor's repertoire: each scenario is a set of rules in the censor namespace (iptables
filter and nat rules, a tc shaper) and of orders to the ISP's resolver, together with the
verdicts the exporter must then report for every lab check and the vantage state.

Rules live in chains of their own (RXLAB, jumped to from FORWARD and PREROUTING), so that
applying a scenario is "flush, then add" and lifting one is "flush"."""

from __future__ import annotations

import dataclasses
import shlex

from lab import net, topology
from lab.labconfig import CHECKS, RESOLVERS
from lab.net import Lab, run

CHAIN = "RXLAB"
THROTTLE_RATE = "128kbit"
# Room for all a media connection has in flight (its server keeps a small send buffer), so
# that the shaper delays packets instead of dropping them. A tail-drop policer, as the real
# throttlers use, costs TCP whole retransmission timeouts (~1 s gaps) at this rate, which the
# lab's 1.5 s runs would read as stalls; real checks run for 10 s with a 5 s stall_timeout.
THROTTLE_QUEUE_PACKETS = 30

M, MEDIA = net.MESSENGER, net.MEDIA
MESSENGER_NAMES = ("chat.messenger.lab", "www.messenger.lab", "media.messenger.lab")
WEB_CHECKS = (
    "messenger/chat",
    "messenger/tls",
    "messenger/web",
    "messenger/plain",
    "messenger/upload",
)
TELEGRAM = ("telegram/dc", "telegram/dc-post")
# The messenger and its CDN (10.77.1.10 and .11): what the 2025 per-connection limits hit.
HOSTING = f"{M}/31"
# The packets a connection may carry each way before the censor cuts it (net4people/bbs#490,
# "about 25 packets"); the handshakes and small exchanges of the other checks stay under it.
PACKET_LIMIT = 25
# Chrome's ALPS extension for h2 (codepoint 17613, body "h2"): in Chrome's ClientHello only,
# neither in Firefox's nor in OpenSSL's.
CHROME_PATTERN = "|44cd00050003026832|"
ALL_MESSENGER = (*WEB_CHECKS, "messenger/media", "messenger/calls", "messenger/quic")


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    filter: tuple[str, ...] = ()  # iptables rules (FORWARD) in the censor
    nat: tuple[str, ...] = ()  # iptables rules (PREROUTING, nat) in the censor
    throttle: str | None = None  # a server address whose traffic to the client is shaped
    dns: tuple[tuple[str, str], ...] = ()  # ISP resolver orders: (name, mode)
    expect: tuple[tuple[str, str], ...] = ()  # "service/check" -> verdict; others are ok
    resolvers: tuple[tuple[str, str], ...] = ()  # "service/check/resolver" -> verdict
    vantage: str = "online"

    def verdicts(self) -> dict[str, str]:
        """The verdict of every lab check under this scenario."""
        out = dict.fromkeys(CHECKS, "ok")
        out.update(self.expect)
        return out

    def resolver_verdicts(self) -> dict[str, str]:
        """The own verdict of every resolver of the lab's dns check under this scenario."""
        out = dict.fromkeys(RESOLVERS, "ok")
        out.update(self.resolvers)
        return out


def _all(checks: tuple[str, ...], verdict: str) -> tuple[tuple[str, str], ...]:
    return tuple((check, verdict) for check in checks)


def _dns(mode: str) -> tuple[tuple[str, str], ...]:
    return tuple((name, mode) for name in MESSENGER_NAMES)


def _isp(verdict: str) -> tuple[tuple[str, str], ...]:
    """The ISP resolver's own verdict; the encrypted control's stays ok."""
    return (("messenger/dns/system", verdict),)


SNI = f"-d {M} -p tcp --dport 443 -m string --string chat.messenger.lab --algo bm"
HOST = f"-d {M} -p tcp --dport 80 -m string --string chat.messenger.lab --algo bm"

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("clean", "no censorship: every check ok"),
    # -- DNS: the ISP resolver obeys the orders; the encrypted control stays honest ----------
    Scenario(
        "dns-nxdomain",
        "the messenger's names removed from the national DNS (NXDOMAIN at the ISP resolver)",
        dns=_dns("nxdomain"),
        resolvers=_isp("dns_nxdomain"),
        expect=(("messenger/dns", "dns_nxdomain"), *_all(ALL_MESSENGER, "dns_nxdomain")),
    ),
    Scenario(
        "dns-nodata",
        "the names exist but their A records were removed (NOERROR, no answer)",
        dns=_dns("nodata"),
        resolvers=_isp("dns_nodata"),
        expect=(("messenger/dns", "dns_nodata"), *_all(ALL_MESSENGER, "dns_nodata")),
    ),
    Scenario(
        "dns-servfail",
        "the ISP resolver fails for the names (SERVFAIL)",
        dns=_dns("servfail"),
        resolvers=_isp("dns_error"),
        expect=(("messenger/dns", "dns_error"), *_all(ALL_MESSENGER, "dns_error")),
    ),
    Scenario(
        "dns-timeout",
        "the ISP resolver silently drops queries for the names",
        dns=_dns("drop"),
        resolvers=_isp("dns_timeout"),
        expect=(("messenger/dns", "dns_timeout"), *_all(ALL_MESSENGER, "dns_timeout")),
    ),
    Scenario(
        "dns-bogon",
        "the ISP resolver answers 127.0.0.1 for the names",
        dns=_dns("bogon"),
        resolvers=_isp("dns_bogon"),
        expect=(("messenger/dns", "dns_bogon"), *_all(ALL_MESSENGER, "dns_bogon")),
    ),
    Scenario(
        "dns-blockpage",
        "the ISP resolver answers with its blockpage server's address",
        dns=_dns("blockpage"),
        resolvers=_isp("dns_mismatch"),
        expect=(
            ("messenger/dns", "dns_mismatch"),
            # The blockpage server accepts TCP on 443, but its certificate is its own.
            ("messenger/tls", "tls_cert_invalid"),
            ("messenger/web", "tls_cert_invalid"),
            ("messenger/media", "tls_cert_invalid"),
            ("messenger/upload", "tls_cert_invalid"),
            ("messenger/plain", "http_blockpage"),
            # Nothing listens there for UDP: ICMP port unreachable.
            ("messenger/calls", "udp_error"),
            ("messenger/quic", "udp_error"),
        ),
    ),
    # -- IP blocking ---------------------------------------------------------------------------
    Scenario(
        "ip-block",
        "every packet to the messenger and its CDN dropped; the proxy beyond the censor still "
        "reaches them (the proxy scenario)",
        filter=(f"-d {M} -j DROP", f"-d {MEDIA} -j DROP"),
        expect=(
            *_all(WEB_CHECKS, "tcp_timeout"),
            ("messenger/media", "tcp_timeout"),
            ("messenger/calls", "udp_timeout"),
            ("messenger/quic", "udp_timeout"),
        ),
    ),
    Scenario(
        "syn-drop",
        "TCP SYNs to the messenger dropped",
        filter=(f"-d {M} -p tcp --syn -j DROP",),
        expect=_all(WEB_CHECKS, "tcp_timeout"),
    ),
    Scenario(
        "syn-reset",
        "TCP SYNs to the messenger answered with RST",
        filter=(f"-d {M} -p tcp --syn -j REJECT --reject-with tcp-reset",),
        expect=_all(WEB_CHECKS, "tcp_refused"),
    ),
    Scenario(
        "net-unreachable",
        "packets to the messenger answered with ICMP network unreachable",
        filter=(f"-d {M} -j REJECT --reject-with icmp-net-unreachable",),
        expect=(
            *_all(WEB_CHECKS, "tcp_error"),
            ("messenger/calls", "udp_error"),
            ("messenger/quic", "udp_error"),
        ),
    ),
    # -- SNI filtering -------------------------------------------------------------------------
    Scenario(
        "sni-reset",
        "a ClientHello naming chat.messenger.lab is answered with RST; another name passes",
        filter=(f"{SNI} -j REJECT --reject-with tcp-reset",),
        expect=(("messenger/tls", "tls_sni_blocked"), ("messenger/web", "tls_reset")),
    ),
    Scenario(
        "sni-drop",
        "a ClientHello naming chat.messenger.lab is dropped; another name passes",
        filter=(f"{SNI} -j DROP",),
        expect=(("messenger/tls", "tls_sni_blocked"), ("messenger/web", "tls_timeout")),
    ),
    Scenario(
        "tls-mitm",
        "TLS to the messenger diverted to a server with another certificate (interception)",
        nat=(f"-d {M} -p tcp --dport 443 -j DNAT --to-destination {net.BLOCKPAGE}:443",),
        expect=(
            ("messenger/tls", "tls_cert_invalid"),
            ("messenger/web", "tls_cert_invalid"),
            ("messenger/upload", "tls_cert_invalid"),
        ),
    ),
    Scenario(
        "tls-garbage",
        "TLS to the messenger diverted to a plain-HTTP server (a transparent proxy)",
        nat=(
            f"-d {M} -p tcp --dport 443 -j DNAT "
            f"--to-destination {net.BLOCKPAGE}:{net.PORT_BLOCKPAGE_PLAIN}",
        ),
        expect=(
            ("messenger/tls", "tls_error"),
            ("messenger/web", "tls_error"),
            ("messenger/upload", "tls_error"),
        ),
    ),
    # -- HTTP ----------------------------------------------------------------------------------
    Scenario(
        "http-blockpage",
        "plain HTTP to the messenger diverted to the ISP's blockpage (a redirect to it)",
        nat=(f"-d {M} -p tcp --dport 80 -j DNAT --to-destination {net.BLOCKPAGE}:80",),
        expect=(("messenger/plain", "http_blockpage"),),
    ),
    Scenario(
        "http-451",
        "plain HTTP to the messenger answered 451 by a transparent proxy",
        nat=(
            f"-d {M} -p tcp --dport 80 -j DNAT "
            f"--to-destination {net.BLOCKPAGE}:{net.PORT_BLOCKPAGE_451}",
        ),
        expect=(("messenger/plain", "http_status"),),
    ),
    Scenario(
        "http-reset",
        "an HTTP request naming chat.messenger.lab is answered with RST",
        filter=(f"{HOST} -j REJECT --reject-with tcp-reset",),
        expect=(("messenger/plain", "http_reset"),),
    ),
    Scenario(
        "http-drop",
        "an HTTP request naming chat.messenger.lab is dropped",
        filter=(f"{HOST} -j DROP",),
        expect=(("messenger/plain", "http_timeout"),),
    ),
    Scenario(
        "http-garbage",
        "plain HTTP to the messenger answered with bytes that are not HTTP",
        nat=(
            f"-d {M} -p tcp --dport 80 -j DNAT "
            f"--to-destination {net.BLOCKPAGE}:{net.PORT_BLOCKPAGE_GARBAGE}",
        ),
        expect=(("messenger/plain", "http_error"),),
    ),
    # -- Transfers -----------------------------------------------------------------------------
    Scenario(
        "freeze-16k",
        "the 16 KB freeze: packets from the media CDN dropped once 16 KB have flowed on a "
        "connection",
        filter=(
            f"-s {MEDIA} -p tcp -m connbytes --connbytes 16384: --connbytes-dir reply "
            "--connbytes-mode bytes -j DROP",
        ),
        expect=(("messenger/media", "stalled"),),
    ),
    Scenario(
        "throttle",
        f"traffic from the media CDN to the client shaped to {THROTTLE_RATE}",
        throttle=MEDIA,
        expect=(("messenger/media", "throttled"),),
    ),
    # -- The 2025-2026 per-connection limits to foreign hosting ---------------------------------
    Scenario(
        "packets-reply",
        f"the messenger's and its CDN's packets dropped after {PACKET_LIMIT} on a connection: "
        "downloads freeze, and so do uploads, whose ACKs stop",
        filter=(
            f"-s {HOSTING} -p tcp --sport 443 -m connbytes --connbytes {PACKET_LIMIT}: "
            "--connbytes-dir reply --connbytes-mode packets -j DROP",
        ),
        expect=(("messenger/media", "stalled"), ("messenger/upload", "stalled")),
    ),
    Scenario(
        "packets-original",
        f"the client's packets to the messenger and its CDN dropped after {PACKET_LIMIT} on a "
        "connection: uploads freeze, and so do downloads, whose ACKs stop",
        filter=(
            f"-d {HOSTING} -p tcp --dport 443 -m connbytes --connbytes {PACKET_LIMIT}: "
            "--connbytes-dir original --connbytes-mode packets -j DROP",
        ),
        expect=(("messenger/media", "stalled"), ("messenger/upload", "stalled")),
    ),
    Scenario(
        "upload-16k",
        "the client's packets to the messenger dropped once 16 KB have flowed on a connection "
        "(the freeze, upstream)",
        filter=(
            f"-d {M} -p tcp --dport 443 -m connbytes --connbytes 16384: --connbytes-dir original "
            "--connbytes-mode bytes -j DROP",
        ),
        expect=(("messenger/upload", "stalled"),),
    ),
    # -- ClientHello fingerprints and application answers -------------------------------------
    Scenario(
        "tls-fingerprint",
        "a ClientHello shaped like Chrome's (its ALPS extension) answered with RST; Firefox's "
        "and OpenSSL's pass",
        filter=(
            f"-d {M} -p tcp --dport 443 -m string --algo bm --hex-string {CHROME_PATTERN} "
            "-j REJECT --reject-with tcp-reset",
        ),
        expect=(("messenger/tls", "tls_fingerprint_blocked"),),
    ),
    Scenario(
        "dc-silent-proxy",
        "a transparent proxy takes every TCP connection to the data centre and answers nothing: "
        "the handshake reads ok, the POST gets no answer",
        nat=(
            f"-d {net.DC} -p tcp -j DNAT "
            f"--to-destination {net.BLOCKPAGE}:{net.PORT_BLOCKPAGE_SILENT}",
        ),
        expect=(("telegram/dc-post", "http_timeout"),),
    ),
    # -- UDP -----------------------------------------------------------------------------------
    Scenario(
        "udp-drop",
        "UDP to the messenger (STUN, QUIC) dropped while TCP works",
        filter=(f"-d {M} -p udp -j DROP",),
        expect=(("messenger/calls", "udp_timeout"), ("messenger/quic", "udp_timeout")),
    ),
    Scenario(
        "udp-reject",
        "UDP to the messenger answered with ICMP port unreachable",
        filter=(f"-d {M} -p udp -j REJECT --reject-with icmp-port-unreachable",),
        expect=(("messenger/calls", "udp_error"), ("messenger/quic", "udp_error")),
    ),
    Scenario(
        "quic-stall",
        "QUIC answered once, then every later packet from the server dropped",
        filter=(
            f"-s {M} -p udp --sport 443 -m connbytes --connbytes 2: --connbytes-dir reply "
            "--connbytes-mode packets -j DROP",
        ),
        expect=(("messenger/quic", "tls_timeout"),),
    ),
    # -- Encrypted DNS and the whole network ---------------------------------------------------
    Scenario(
        "encrypted-dns-block",
        "DoH and DoT to the control resolver dropped: the dns check still judges the ISP's "
        "answer, the control resolver's own verdict shows the block",
        filter=(f"-d {net.CONTROL_DNS} -p tcp -j DROP",),
        resolvers=(("messenger/dns/control", "dns_timeout"),),
    ),
    Scenario(
        "whitelist",
        "whitelist mode: every foreign address unreachable, domestic ones fine",
        filter=(f"-d {net.FOREIGN_NET}.0/24 -j DROP",),
        expect=(
            *_all(WEB_CHECKS, "tcp_timeout"),
            ("messenger/media", "tcp_timeout"),
            ("messenger/calls", "udp_timeout"),
            ("messenger/quic", "udp_timeout"),
            ("vpn/web", "tcp_timeout"),
            ("vpn/media", "tcp_timeout"),
            ("neutral/web", "tcp_timeout"),
            *_all(TELEGRAM, "tcp_timeout"),
        ),
        resolvers=(("messenger/dns/control", "dns_timeout"),),
        vantage="whitelist",
    ),
    Scenario(
        "offline",
        "nothing reachable beyond the censor",
        filter=("-j DROP",),
        expect=(
            ("messenger/dns", "dns_timeout"),
            *_all(ALL_MESSENGER, "dns_timeout"),
            ("vpn/web", "tcp_timeout"),
            ("vpn/media", "tcp_timeout"),
            ("neutral/web", "dns_timeout"),
            ("domestic/web", "dns_timeout"),
            *_all(TELEGRAM, "tcp_timeout"),
        ),
        resolvers=(
            ("messenger/dns/system", "dns_timeout"),
            ("messenger/dns/control", "dns_timeout"),
        ),
        vantage="offline",
    ),
)

BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


def _iptables(lab: Lab, *args: str, check: bool = True) -> None:
    run(["iptables", "-w", *args], netns=lab.censor, check=check)


def install_chains(lab: Lab) -> None:
    """Empty RXLAB chains, jumped to first from FORWARD and nat PREROUTING."""
    for table, hook in (("filter", "FORWARD"), ("nat", "PREROUTING")):
        _iptables(lab, "-t", table, "-N", CHAIN, check=False)
        _iptables(lab, "-t", table, "-F", CHAIN)
        _iptables(lab, "-t", table, "-D", hook, "-j", CHAIN, check=False)
        _iptables(lab, "-t", table, "-I", hook, "1", "-j", CHAIN)


def lift(lab: Lab) -> None:
    """Back to a clean network."""
    for table in ("filter", "nat"):
        _iptables(lab, "-t", table, "-F", CHAIN, check=False)
    run(["tc", "qdisc", "del", "dev", topology.CENSOR_CLIENT_IF, "root"],
        netns=lab.censor, check=False)  # fmt: skip
    topology.control(lab, "domestic", {"op": "dns", "entries": {}})
    lab.path("scenario").write_text("clean\n")


def _throttle(lab: Lab, address: str) -> None:
    dev = topology.CENSOR_CLIENT_IF

    def tc(*args: str) -> None:
        run(["tc", *args], netns=lab.censor)

    tc("qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10", "r2q", "100000")
    tc("class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit")
    tc("class", "add", "dev", dev, "parent", "1:", "classid", "1:20", "htb",
       "rate", THROTTLE_RATE, "ceil", THROTTLE_RATE, "quantum", "1514")  # fmt: skip
    tc("qdisc", "add", "dev", dev, "parent", "1:20", "handle", "20:", "pfifo",
       "limit", str(THROTTLE_QUEUE_PACKETS))  # fmt: skip
    tc("filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "u32",
       "match", "ip", "src", f"{address}/32", "flowid", "1:20")  # fmt: skip


def apply(lab: Lab, scenario: Scenario) -> None:
    """Lift whatever is in force, then put `scenario` in force."""
    lift(lab)
    for rule in scenario.filter:
        _iptables(lab, "-A", CHAIN, *shlex.split(rule))
    for rule in scenario.nat:
        _iptables(lab, "-t", "nat", "-A", CHAIN, *shlex.split(rule))
    if scenario.throttle:
        _throttle(lab, scenario.throttle)
    if scenario.dns:
        topology.control(lab, "domestic", {"op": "dns", "entries": dict(scenario.dns)})
    lab.path("scenario").write_text(scenario.name + "\n")


def current(lab: Lab) -> str:
    path = lab.path("scenario")
    return path.read_text().strip() if path.exists() else "clean"
