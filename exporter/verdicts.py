"""The closed set of verdicts (the README's table): what a check saw, named by the earliest
failing layer. Label values come only from here, never from exception text; `DECIDED_BY`
says which function decides each one (classify for every layer's failure, the pure DNS
judge for answers), and tests/test_verdicts.py holds every other module to that."""

from __future__ import annotations

import enum


class Verdict(enum.StrEnum):
    OK = "ok"
    DNS_NXDOMAIN = "dns_nxdomain"
    DNS_NODATA = "dns_nodata"
    DNS_TIMEOUT = "dns_timeout"
    DNS_ERROR = "dns_error"
    DNS_BOGON = "dns_bogon"
    DNS_MISMATCH = "dns_mismatch"
    TCP_TIMEOUT = "tcp_timeout"
    TCP_REFUSED = "tcp_refused"
    TCP_ERROR = "tcp_error"
    TLS_RESET = "tls_reset"
    TLS_TIMEOUT = "tls_timeout"
    TLS_SNI_BLOCKED = "tls_sni_blocked"
    TLS_CERT_INVALID = "tls_cert_invalid"
    TLS_FINGERPRINT_BLOCKED = "tls_fingerprint_blocked"
    TLS_ERROR = "tls_error"
    HTTP_BLOCKPAGE = "http_blockpage"
    HTTP_STATUS = "http_status"
    HTTP_RESET = "http_reset"
    HTTP_TIMEOUT = "http_timeout"
    HTTP_ERROR = "http_error"
    STALLED = "stalled"
    THROTTLED = "throttled"
    UDP_TIMEOUT = "udp_timeout"
    UDP_ERROR = "udp_error"
    ERROR = "error"


# Each verdict and the functions that decide it (module.function): the DNS judge for
# answers, classify for every layer's failure. `ok` is not decided: it is what a probe
# reports when no layer raised a failure.
OK_WHEN = "no layer raised a failure"
DECIDED_BY: dict[Verdict, tuple[str, ...]] = {
    Verdict.OK: (),
    Verdict.DNS_NXDOMAIN: (
        "exporter.dnsjudge.reply_failure",
        "exporter.classify.proxy_name_failure",
    ),
    Verdict.DNS_NODATA: ("exporter.dnsjudge.reply_failure", "exporter.dnsjudge.resolution_failure"),
    Verdict.DNS_TIMEOUT: ("exporter.dnsjudge.reply_failure", "exporter.classify.verdict"),
    Verdict.DNS_ERROR: ("exporter.dnsjudge.reply_failure", "exporter.classify.proxy_name_failure"),
    Verdict.DNS_BOGON: ("exporter.dnsjudge.judge_resolver", "exporter.dnsjudge.resolution_failure"),
    Verdict.DNS_MISMATCH: ("exporter.dnsjudge.judge_resolver",),
    Verdict.TCP_TIMEOUT: ("exporter.classify.tcp_failure",),
    Verdict.TCP_REFUSED: ("exporter.classify.tcp_failure",),
    Verdict.TCP_ERROR: ("exporter.classify.tcp_failure",),
    Verdict.TLS_RESET: ("exporter.classify.tls_failure",),
    Verdict.TLS_TIMEOUT: ("exporter.classify.tls_failure",),
    Verdict.TLS_SNI_BLOCKED: ("exporter.classify.tls_failure",),
    Verdict.TLS_CERT_INVALID: ("exporter.classify.tls_failure",),
    Verdict.TLS_FINGERPRINT_BLOCKED: ("exporter.classify.tls_failure",),
    Verdict.TLS_ERROR: ("exporter.classify.tls_failure",),
    Verdict.HTTP_BLOCKPAGE: ("exporter.classify.http_failure",),
    Verdict.HTTP_STATUS: ("exporter.classify.http_failure",),
    Verdict.HTTP_RESET: ("exporter.classify.http_failure",),
    Verdict.HTTP_TIMEOUT: ("exporter.classify.http_failure",),
    Verdict.HTTP_ERROR: ("exporter.classify.http_failure",),
    Verdict.STALLED: ("exporter.classify.transfer_failure",),
    Verdict.THROTTLED: ("exporter.classify.transfer_failure",),
    Verdict.UDP_TIMEOUT: ("exporter.classify.udp_failure",),
    Verdict.UDP_ERROR: ("exporter.classify.udp_failure",),
    Verdict.ERROR: ("exporter.classify.exporter_failure",),
}

# The failures of each layer a check can go through, from resolving its target upwards; the
# registry of kinds (exporter/kinds.py) gives each kind the union of its layers. `error`
# (the exporter itself failed) is possible in every kind.
EXPORTER_FAILURES = frozenset({Verdict.ERROR})
RESOLVE_FAILURES = frozenset(
    {
        Verdict.DNS_NXDOMAIN,
        Verdict.DNS_NODATA,
        Verdict.DNS_TIMEOUT,
        Verdict.DNS_ERROR,
        Verdict.DNS_BOGON,
    }
)
ANSWER_FAILURES = frozenset({Verdict.DNS_MISMATCH})  # answers compared with the control's
TCP_FAILURES = frozenset({Verdict.TCP_TIMEOUT, Verdict.TCP_REFUSED, Verdict.TCP_ERROR})
TLS_FAILURES = frozenset(
    {Verdict.TLS_RESET, Verdict.TLS_TIMEOUT, Verdict.TLS_CERT_INVALID, Verdict.TLS_ERROR}
)
SNI_FAILURES = frozenset({Verdict.TLS_SNI_BLOCKED})  # a retry with control_sni passed
FINGERPRINT_FAILURES = frozenset({Verdict.TLS_FINGERPRINT_BLOCKED})  # a browser shape failed
# QUIC carries its TLS handshake in UDP packets: no reset to see.
QUIC_HANDSHAKE_FAILURES = frozenset(
    {Verdict.TLS_TIMEOUT, Verdict.TLS_CERT_INVALID, Verdict.TLS_ERROR}
)
HTTP_FAILURES = frozenset(
    {
        Verdict.HTTP_BLOCKPAGE,
        Verdict.HTTP_STATUS,
        Verdict.HTTP_RESET,
        Verdict.HTTP_TIMEOUT,
        Verdict.HTTP_ERROR,
    }
)
TRANSFER_FAILURES = frozenset({Verdict.STALLED, Verdict.THROTTLED})
UDP_FAILURES = frozenset({Verdict.UDP_TIMEOUT, Verdict.UDP_ERROR})


class VantageState(enum.StrEnum):
    ONLINE = "online"
    WHITELIST = "whitelist"
    OFFLINE = "offline"
    UNKNOWN = "unknown"
