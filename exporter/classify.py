"""The one place that turns what went wrong on the wire into a verdict: each function takes
the exception raised in one layer and names the symptom, so that layers never blur."""

from __future__ import annotations

import asyncio
import errno
import ssl
from collections.abc import Iterator

import httpx

from exporter.verdicts import Verdict

# ICMP host/port unreachable and RST all mean "something answered no".
_REFUSED_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.EHOSTDOWN}
# Phrases with which httpcore/h11 report a peer that went away mid-response.
_PEER_CLOSED_PHRASES = ("disconnected", "peer closed", "connection lost", "incomplete")


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it was raised from or while handling."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError | httpx.TimeoutException)


def _is_peer_gone(exc: BaseException) -> bool:
    """A reset, or a close that the protocol did not expect (EOF inside TLS or HTTP)."""
    if isinstance(
        exc,
        ConnectionResetError
        | ConnectionAbortedError
        | BrokenPipeError
        | ssl.SSLEOFError
        | ssl.SSLZeroReturnError
        | asyncio.IncompleteReadError,
    ):
        return True
    if isinstance(exc, ConnectionError) and "lost" in str(exc).lower():
        return True
    if isinstance(exc, httpx.RemoteProtocolError):
        text = str(exc).lower()
        return any(phrase in text for phrase in _PEER_CLOSED_PHRASES)
    return False


def tcp_failure(exc: BaseException) -> Verdict:
    """A failed TCP handshake."""
    for cause in causes(exc):
        if _is_timeout(cause):
            return Verdict.TCP_TIMEOUT
        if isinstance(cause, ConnectionRefusedError):
            return Verdict.TCP_REFUSED
        if isinstance(cause, OSError) and cause.errno in _REFUSED_ERRNOS:
            return Verdict.TCP_REFUSED
    return Verdict.TCP_ERROR


def tls_failure(exc: BaseException) -> Verdict:
    """A failed TLS handshake (TCP already established)."""
    for cause in causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return Verdict.TLS_CERT_INVALID
        if _is_timeout(cause):
            return Verdict.TLS_TIMEOUT
        if _is_peer_gone(cause):
            return Verdict.TLS_RESET
    return Verdict.TLS_ERROR


def http_failure(exc: BaseException) -> Verdict:
    """A failure after the connection (and TLS, if any) was up, before the response ended."""
    for cause in causes(exc):
        if _is_timeout(cause):
            return Verdict.HTTP_TIMEOUT
        if _is_peer_gone(cause):
            return Verdict.HTTP_RESET
    return Verdict.HTTP_ERROR


def describe(exc: BaseException) -> str:
    """Evidence text for an exception: its type and message, and its root cause's."""
    chain = [c for c in causes(exc)]
    parts = []
    for cause in chain[:3]:
        text = str(cause) or repr(cause)
        parts.append(f"{type(cause).__name__}: {text}")
    return "; caused by ".join(parts)
