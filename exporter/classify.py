"""The one place that turns what went wrong into a verdict. The layers raise the typed
failures of `exporter.errors` (with the low-level error as their cause); `verdict` maps a
failure to the verdict of its layer and symptom, reading exception types, never messages.
DNS answers are judged by the pure functions of `exporter.dnsjudge`; the table of which
function decides which verdict is `exporter.verdicts.DECIDED_BY`."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Iterator

from exporter import errors
from exporter.verdicts import Verdict

# ICMP host/port unreachable and RST all mean "something answered no".
_REFUSED_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.EHOSTDOWN}
# The exporter's own process or machine ran out of descriptors or buffers: not the target.
_EXPORTER_EXHAUSTED_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# How getaddrinfo says what went wrong resolving a proxy's name.
_GAI_VERDICTS = {socket.EAI_NONAME: Verdict.DNS_NXDOMAIN, socket.EAI_AGAIN: Verdict.DNS_TIMEOUT}
# A reset, or a close that the protocol did not expect (EOF inside TLS or HTTP).
_PEER_GONE = (
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
    asyncio.IncompleteReadError,
    errors.PeerClosed,
    errors.TlsClosed,
)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it was raised from or while handling."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


log = logging.getLogger(__name__)


def verdict(failure: errors.ProbeFailure) -> Verdict:
    """The verdict of a failure raised by a probe layer."""
    if exporter_exhausted(failure):
        return exporter_failure(failure)
    if isinstance(failure, errors.ResolveFailure):
        return failure.verdict
    if isinstance(failure, errors.ResolveTimeout):
        return Verdict.DNS_TIMEOUT
    if isinstance(failure, errors.ProxyNameFailure):
        return proxy_name_failure(failure)
    if isinstance(failure, errors.TcpFailure):
        return tcp_failure(failure)
    if isinstance(failure, errors.TlsFailure):
        return tls_failure(failure)
    if isinstance(failure, errors.HttpFailure):
        return http_failure(failure)
    if isinstance(failure, errors.TransferFailure):
        return transfer_failure(failure)
    if isinstance(failure, errors.UdpFailure):
        return udp_failure(failure)
    raise TypeError(f"no verdict for {type(failure).__name__}")  # a new failure type: a bug


def proxy_name_failure(failure: errors.ProxyNameFailure) -> Verdict:
    """The vantage point cannot find its own proxy: a DNS symptom, not a bug."""
    for cause in causes(failure):
        if isinstance(cause, OSError) and cause.errno in _GAI_VERDICTS:
            return _GAI_VERDICTS[cause.errno]
    return Verdict.DNS_ERROR


def tcp_failure(exc: BaseException) -> Verdict:
    """A failed TCP handshake (directly, or a proxy's to the target)."""
    for cause in causes(exc):
        if isinstance(cause, errors.TcpTimeout | TimeoutError):
            return Verdict.TCP_TIMEOUT
        if isinstance(cause, errors.TcpRefused | ConnectionRefusedError):
            return Verdict.TCP_REFUSED
        if isinstance(cause, OSError) and cause.errno in _REFUSED_ERRNOS:
            return Verdict.TCP_REFUSED
    return Verdict.TCP_ERROR


# Per layer, in order: the first cause in the chain of one of these types names the verdict.
_Rules = tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Verdict], ...]
_TLS_RULES: _Rules = (
    (errors.FingerprintBlocked, Verdict.TLS_FINGERPRINT_BLOCKED),
    (errors.SniBlocked, Verdict.TLS_SNI_BLOCKED),
    ((errors.CertificateInvalid, ssl.SSLCertVerificationError), Verdict.TLS_CERT_INVALID),
    ((errors.TlsTimeout, TimeoutError), Verdict.TLS_TIMEOUT),
    (_PEER_GONE, Verdict.TLS_RESET),
)
_HTTP_RULES: _Rules = (
    (errors.Blockpage, Verdict.HTTP_BLOCKPAGE),
    (errors.UnexpectedStatus, Verdict.HTTP_STATUS),
    ((errors.HttpTimeout, TimeoutError), Verdict.HTTP_TIMEOUT),
    (_PEER_GONE, Verdict.HTTP_RESET),
)


def _first_rule(
    exc: BaseException,
    rules: _Rules,
    otherwise: Verdict,
) -> Verdict:
    for cause in causes(exc):
        for kinds, verdict in rules:
            if isinstance(cause, kinds):
                return verdict
    return otherwise


def tls_failure(exc: BaseException) -> Verdict:
    """A failed TLS handshake (TCP already established), over TCP or inside QUIC."""
    return _first_rule(exc, _TLS_RULES, Verdict.TLS_ERROR)


# What a censor judging ClientHellos does to the shape it dislikes; a certificate that does
# not verify came after the hello got through, so it stays what it is.
_FINGERPRINT_SYMPTOMS = frozenset({Verdict.TLS_RESET, Verdict.TLS_TIMEOUT, Verdict.TLS_ERROR})


def fingerprint_blocked(own: errors.ProbeFailure | None, shapes: dict[str, bool]) -> bool:
    """Whether a tls check with browser shapes (name -> got a ServerHello) is
    tls_fingerprint_blocked: one hello passed (the check's own counts, `own` None) and a
    listed shape failed, to the same address with the same SNI."""
    if not shapes or all(shapes.values()):
        return False
    if own is None:
        return True
    own_symptom = isinstance(own, errors.TlsFailure) and tls_failure(own) in _FINGERPRINT_SYMPTOMS
    return own_symptom and any(shapes.values())


def http_failure(exc: BaseException) -> Verdict:
    """A failure after the connection (and TLS, if any) was up: the response and its chain."""
    return _first_rule(exc, _HTTP_RULES, Verdict.HTTP_ERROR)


def transfer_failure(failure: errors.TransferFailure) -> Verdict:
    """A download that started but fell short of the check's bounds."""
    if isinstance(failure, errors.Throttled):
        return Verdict.THROTTLED
    return Verdict.STALLED


def udp_failure(failure: errors.UdpFailure) -> Verdict:
    """An answer of any kind (ICMP, garbage) is udp_error; only silence is udp_timeout."""
    if isinstance(failure, errors.UdpTimeout):
        return Verdict.UDP_TIMEOUT
    return Verdict.UDP_ERROR


def exporter_exhausted(exc: BaseException) -> bool:
    """True when `exc` says the exporter itself ran out of file descriptors (or socket
    buffers): the run says nothing about the target, so its verdict is `error`. Logged at
    error, since it needs the operator (LimitNOFILE, --web.max-connections)."""
    for cause in causes(exc):
        if isinstance(cause, OSError) and cause.errno in _EXPORTER_EXHAUSTED_ERRNOS:
            log.error("the exporter ran out of resources for a probe: %s", cause)
            return True
    return False


def exporter_failure(exc: BaseException | None = None) -> Verdict:
    """The exporter's own failure (a bug, an overrun): never a target verdict."""
    return Verdict.ERROR


def describe(exc: BaseException) -> str:
    """Evidence text for an exception: its type and message, and its root cause's."""
    chain = [c for c in causes(exc)]
    parts = []
    for cause in chain[:3]:
        text = str(cause) or repr(cause)
        parts.append(f"{type(cause).__name__}: {text}")
    return "; caused by ".join(parts)
