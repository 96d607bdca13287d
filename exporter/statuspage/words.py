"""Verdicts and vantage states in plain words, for people who do not read verdict codes: what
the status page shows, and what /api/v1/status gives beside each code."""

from __future__ import annotations

from exporter.verdicts import VantageState, Verdict

VERDICT_TEXT: dict[Verdict, str] = {
    Verdict.OK: "works",
    Verdict.DNS_NXDOMAIN: "DNS says the name does not exist",
    Verdict.DNS_NODATA: "DNS records removed",
    Verdict.DNS_TIMEOUT: "DNS does not answer",
    Verdict.DNS_ERROR: "DNS fails (refused, server failure or unreachable resolver)",
    Verdict.DNS_BOGON: "DNS answers with a fake local address",
    Verdict.DNS_MISMATCH: "DNS answers differ from the control resolver's",
    Verdict.TCP_TIMEOUT: "connections silently dropped",
    Verdict.TCP_REFUSED: "connections refused",
    Verdict.TCP_ERROR: "connections fail",
    Verdict.TLS_RESET: "TLS reset when the name is seen",
    Verdict.TLS_TIMEOUT: "TLS handshake stalls",
    Verdict.TLS_SNI_BLOCKED: "blocked by name (SNI): another name to the same address works",
    Verdict.TLS_CERT_INVALID: "wrong certificate (possible interception)",
    Verdict.TLS_ERROR: "TLS handshake fails",
    Verdict.HTTP_BLOCKPAGE: "a blockpage is served instead",
    Verdict.HTTP_STATUS: "unexpected HTTP status",
    Verdict.HTTP_RESET: "connection reset during the response",
    Verdict.HTTP_TIMEOUT: "no complete response in time",
    Verdict.HTTP_ERROR: "HTTP request fails",
    Verdict.STALLED: "transfer starts, then freezes",
    Verdict.THROTTLED: "transfer throttled",
    Verdict.UDP_TIMEOUT: "no answer over UDP",
    Verdict.UDP_ERROR: "UDP probe fails",
    Verdict.ERROR: "the exporter failed to run this check (see its log)",
}

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
    return PENDING_TEXT if verdict is None else VERDICT_TEXT[verdict]
