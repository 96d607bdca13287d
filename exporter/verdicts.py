"""The closed set of verdicts (CONTRACT.md): what a check saw, named by the earliest failing
layer. Label values come only from here, never from exception text."""

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


class VantageState(enum.StrEnum):
    ONLINE = "online"
    WHITELIST = "whitelist"
    OFFLINE = "offline"
    UNKNOWN = "unknown"
