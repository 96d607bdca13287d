"""Verdicts and vantage states in plain words, for people who do not read verdict codes: what
the status page shows, and what /api/v1/status gives beside each code."""

from __future__ import annotations

from exporter.verdicts import VantageState, Verdict

# Keyed by the verdicts' values: naming a failure verdict is classify's job alone
# (tests/test_verdicts.py), and a phrase decides nothing. Every verdict has one
# (tests/test_status_words.py).
_PHRASES: dict[str, str] = {
    "ok": "works",
    "dns_nxdomain": "DNS says the name does not exist",
    "dns_nodata": "DNS records removed",
    "dns_timeout": "DNS does not answer",
    "dns_error": "DNS fails (refused, server failure or unreachable resolver)",
    "dns_bogon": "DNS answers with a fake local address",
    "dns_mismatch": "DNS answers differ from the control resolver's",
    "tcp_timeout": "connections silently dropped",
    "tcp_refused": "connections refused",
    "tcp_error": "connections fail",
    "tls_reset": "TLS reset when the name is seen",
    "tls_timeout": "TLS handshake stalls",
    "tls_sni_blocked": "blocked by name (SNI): another name to the same address works",
    "tls_cert_invalid": "wrong certificate (possible interception)",
    "tls_fingerprint_blocked": "blocked by browser fingerprint: one TLS ClientHello shape "
    "works, a browser's does not",
    "tls_error": "TLS handshake fails",
    "http_blockpage": "a blockpage is served instead",
    "http_status": "unexpected HTTP status",
    "http_reset": "connection reset during the response",
    "http_timeout": "no complete response in time",
    "http_error": "HTTP request fails",
    "stalled": "transfer starts, then freezes",
    "throttled": "transfer throttled",
    "udp_timeout": "no answer over UDP",
    "udp_error": "UDP probe fails",
    "error": "the exporter failed to run this check (see its log)",
}

VERDICT_TEXT: dict[Verdict, str] = {Verdict(value): text for value, text in _PHRASES.items()}

PENDING_TEXT = "waiting for the first run"

VANTAGE_TEXT: dict[VantageState, str] = {
    VantageState.ONLINE: "the controls are reachable, so a failure below is a symptom seen "
    "from this network",
    VantageState.WHITELIST: "only domestic controls are reachable (whitelist mode): foreign "
    "services are cut off as a whole, so the verdicts below say little about each one",
    VantageState.OFFLINE: "no control reachable: the network is down; the verdicts below do "
    "not mean blocking",
    VantageState.UNKNOWN: "waiting for every control service to be checked (or none is configured)",
}


def verdict_text(verdict: Verdict | None) -> str:
    if verdict is None:
        return PENDING_TEXT
    # A verdict added without its words still shows, as its code.
    return VERDICT_TEXT.get(verdict, str(verdict))
