"""The connection layers every network probe shares: resolve a target, open TCP to its addresses
in turn, and run a TLS handshake over that connection. Each step times its phase and, when it
fails, raises the typed failure of that layer (`exporter.errors`), so callers never have to
guess from a generic exception which layer broke."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Sequence
from typing import Any

from exporter import classify
from exporter.config import Check
from exporter.errors import (
    CertificateInvalid,
    ResolveFailure,
    TcpFailure,
    TcpTimeout,
    TlsClosed,
    TlsFailure,
)
from exporter.probeenv import ProbeEnv
from exporter.resolve import resolve_target
from exporter.result import PHASE_CONNECT, PHASE_RESOLVE, PHASE_TLS, Phases
from exporter.timeshare import address_deadline
from exporter.verdicts import Verdict

# Bytes a Stream buffers before it stops reading from the socket: a server that floods us
# fills the kernel's window, not our memory.
READ_BUFFER_LIMIT = 256 * 1024
# asyncio's own handshake timeout reports expiry as ConnectionAbortedError, which reads as a
# reset; ours (asyncio.timeout) fires first, so theirs only backs it up.
_HANDSHAKE_TIMEOUT_SLACK = 5.0


# Certificate (DER) -> notAfter; emptied when full, which a handful of targets never reach.
_EXPIRY_CACHE_SIZE = 1024
_expiry_cache: dict[bytes, float] = {}


# -- resolve ---------------------------------------------------------------------------------


async def resolve(
    check: Check,
    env: ProbeEnv,
    deadline: float,
    phases: Phases | None = None,
    host: str | None = None,
) -> list[str]:
    """Addresses to try for `host` (default: the check's own host), in order, through
    `resolve_target`; records the resolve phase and raises ResolveFailure (with the DNS
    judge's verdict) when there is no usable address."""
    resolution = await resolve_target(check, env, deadline, host)
    if phases is not None:
        phases.add(PHASE_RESOLVE, resolution.duration)
    if resolution.verdict is not Verdict.OK:
        raise ResolveFailure(resolution.verdict, resolution.detail)
    assert resolution.addresses, "an ok resolution has an address"
    return resolution.addresses


# -- TCP -------------------------------------------------------------------------------------


class TcpConnection:
    """An established TCP connection: the socket, the address that answered and every
    address tried (in order, including the one that answered)."""

    __slots__ = ("address", "sock", "tried")

    def __init__(self, sock: socket.socket, address: str, tried: list[str]) -> None:
        self.sock = sock
        self.address = address
        self.tried = tried

    def close(self) -> None:
        self.sock.close()


async def open_tcp(
    addresses: Sequence[str],
    port: int,
    deadline: float,
    phases: Phases | None = None,
) -> TcpConnection:
    """Connect to each address in turn until one answers. Each attempt gets an equal share of
    the time left, so one silent address cannot use up the time of those after it. When all
    fail, the verdict is the first address's (the preferred one: with `ip_version: any` an
    unreachable IPv6 must not hide what IPv4 saw); the detail lists every attempt."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    failures: list[TcpFailure] = []
    tried: list[str] = []
    try:
        for index, address in enumerate(addresses):
            if deadline - loop.time() <= 0:
                break
            tried.append(address)
            attempt_started = loop.time()
            until = address_deadline(deadline, len(addresses) - index)
            sock: socket.socket | None = None
            try:
                sock = socket.socket(
                    socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM
                )
                sock.setblocking(False)
                async with asyncio.timeout_at(until):
                    await loop.sock_connect(sock, (address, port))
            except TimeoutError as exc:
                if sock is not None:
                    sock.close()
                text = f"no answer within {until - attempt_started:.3g}s (SYN unanswered)"
                failure: TcpFailure = TcpTimeout(f"{_join(address, port)}: {text}")
                failure.__cause__ = exc
                failures.append(failure)
                continue
            except OSError as exc:
                if sock is not None:
                    sock.close()
                text = f"{type(exc).__name__}: {exc.strerror or exc}"
                failure = TcpFailure(f"{_join(address, port)}: {text}")
                failure.__cause__ = exc
                failures.append(failure)
                continue
            except BaseException:
                if sock is not None:
                    sock.close()
                raise
            return TcpConnection(sock, address, tried)
    finally:
        if phases is not None:
            phases.add(PHASE_CONNECT, loop.time() - started)
    if not failures:
        raise TcpTimeout("no time left to connect", tried)
    first = failures[0].restated("; ".join(failure.detail for failure in failures))
    first.tried = tried
    raise first


def _join(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


# -- streams and TLS -------------------------------------------------------------------------


class Stream(asyncio.Protocol):
    """A byte stream over an asyncio transport (plain or TLS) with bounded buffering.

    Reads return what has arrived (at most `max_bytes`), b"" at a clean end, and raise the
    error that ended the connection (e.g. ConnectionResetError) once the data before it has
    been read. `first_data` is the loop time at which bytes first arrived since the last
    `mark()`: the first byte of a response, for the first_byte phase."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.first_data: float | None = None

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self.first_data is None:
            self.first_data = self._loop.time()
        self._buffer += data
        if len(self._buffer) >= READ_BUFFER_LIMIT and not self._paused and self._transport:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        if exc is not None and self._error is None:
            self._error = exc
        self._wake()

    def _take_error(self) -> BaseException:
        """The error that ended the connection, reported once: raising one exception
        object again and again would only grow its traceback. Later reads see the end."""
        error, self._error = self._error, None
        assert error is not None
        return error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # the stream API

    def mark(self) -> None:
        """Start watching for the next first byte (call before sending a request)."""
        self.first_data = None

    def pending_error(self) -> BaseException | None:
        """The error that ended the connection, if one did, for a writer that reads nothing
        (an upload) and would otherwise never hear of it; taken, as a read would take it."""
        return self._take_error() if self._error is not None else None

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet."""
        return len(self._buffer)

    @property
    def ended(self) -> bool:
        """The peer has finished sending (or the connection is gone)."""
        return self._eof

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._transport

    def get_extra_info(self, name: str) -> Any:
        return None if self._transport is None else self._transport.get_extra_info(name)

    async def read(self, max_bytes: int) -> bytes:
        while not self._buffer:
            if self._error is not None:
                raise self._take_error()
            if self._eof:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if len(self._buffer) <= max_bytes:
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
        if self._paused and len(self._buffer) < READ_BUFFER_LIMIT // 2 and self._transport:
            self._paused = False
            self._transport.resume_reading()
        return data

    def write(self, data: bytes) -> None:
        """Queue `data` for sending. Probes send only small requests, so there is no
        write-side flow control; a connection already gone raises its error."""
        if self._error is not None:
            raise self._take_error()
        if self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("connection closed before the request was sent")
        self._transport.write(data)

    def close(self) -> None:
        """Drop the connection at once. A probe has what it came for; a graceful TLS
        shutdown would wait on the peer (up to asyncio's 30 s) for nothing."""
        if self._transport is not None:
            _abort(self._transport)

    def cert_expiry(self) -> float | None:
        """The leaf certificate's notAfter (unix seconds) when it was verified, else None.
        Decoding the certificate and parsing its date cost more than the rest of a probe's
        Python work; the same certificate comes back run after run, so the answer is kept
        per certificate."""
        ssl_object = self.get_extra_info("ssl_object")
        if (
            not isinstance(ssl_object, ssl.SSLObject)
            or ssl_object.context.verify_mode == ssl.CERT_NONE
        ):
            return None
        der = ssl_object.getpeercert(binary_form=True)
        if der is None:
            return None
        expiry = _expiry_cache.get(der)
        if expiry is None:
            cert = ssl_object.getpeercert()
            if not cert or "notAfter" not in cert:
                return None
            expiry = float(ssl.cert_time_to_seconds(str(cert["notAfter"])))
            if len(_expiry_cache) >= _EXPIRY_CACHE_SIZE:
                _expiry_cache.clear()
            _expiry_cache[der] = expiry
        return expiry

    async def start_tls(
        self,
        context: ssl.SSLContext,
        server_hostname: str,
        deadline: float,
        phases: Phases | None = None,
    ) -> Stream:
        """Upgrade this (plain, established) stream to TLS in place, e.g. inside a proxy
        tunnel; raises TlsFailure."""
        if self._transport is None:
            raise TlsClosed("connection closed before the TLS handshake")
        plain = self._transport
        if self._error is not None:
            # Reset before the ClientHello went out: reads as a reset in the handshake.
            error = self._take_error()
            _abort(plain)
            raise _tls_failure(error) from error
        if self._eof or plain.is_closing():
            _abort(plain)
            raise TlsClosed("connection closed before the TLS handshake")
        self._paused = False
        self.first_data = None
        loop = self._loop
        started = loop.time()
        try:
            async with asyncio.timeout_at(deadline):
                upgraded = await loop.start_tls(
                    plain,
                    self,
                    context,
                    server_hostname=_sni(server_hostname),
                    ssl_handshake_timeout=max(deadline - started, 0.0) + _HANDSHAKE_TIMEOUT_SLACK,
                )
        except (OSError, ssl.SSLError, TimeoutError, EOFError) as exc:
            _abort(plain)
            raise _tls_failure(exc) from exc
        except BaseException:
            # Cancelled (run_check's overrun cut): the plain transport owns the socket and
            # must let go of it now, not after a graceful TLS shutdown.
            _abort(plain)
            raise
        finally:
            if phases is not None:
                phases.add(PHASE_TLS, loop.time() - started)
        if upgraded is None:
            _abort(plain)
            raise TlsClosed("connection closed during the TLS handshake")
        self._transport = upgraded
        return self


def _abort(transport: asyncio.Transport) -> None:
    """Abort `transport`, which owns its socket and closes it a loop turn later; the
    shutdown tells the peer now, so that a probe that has returned has let go of its
    connection as the peer sees it (a server counting our connections sees a limit kept)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    transport.abort()


async def open_stream(sock: socket.socket) -> Stream:
    """A plain Stream over a connected socket (the Stream's transport owns it from then on,
    also when this is cancelled: asyncio then closes the transport, and with it the socket)."""
    stream = Stream()
    await asyncio.get_running_loop().create_connection(lambda: stream, sock=sock)
    return stream


async def tls_handshake(
    sock: socket.socket,
    context: ssl.SSLContext,
    server_hostname: str,
    deadline: float,
    phases: Phases | None = None,
) -> Stream:
    """Run a TLS handshake with SNI `server_hostname` over a connected socket (whose
    transport then owns it, and closes it on failure). `context` decides verification.
    Raises TlsFailure, its cause telling classify a reset from a stall, a bad certificate or
    garbage.

    The socket goes to a plain transport first and TLS starts over it, so that a failed or
    cancelled handshake aborts that transport, which closes the socket. Handing the socket to
    `create_connection(ssl=...)` instead leaves no handle to abort: when the handshake
    completes in the loop iteration that also cancels it (its deadline, or run_check's
    overrun cut, under load), asyncio answers the cancellation with a graceful TLS shutdown
    that keeps the transport alive for up to 30 s, and closing the socket under it frees a
    descriptor number that asyncio still maps to that live transport: the next socket() gets
    the number and asyncio refuses it ("File descriptor N is used by transport")."""
    stream = await open_stream(sock)
    if stream.buffered:
        # Bytes before our ClientHello: no TLS server speaks first (a banner, a blockpage).
        stream.close()
        raise TlsFailure("the server sent data before the ClientHello: not TLS")
    return await stream.start_tls(context, server_hostname, deadline, phases)


def _sni(name: str) -> str:
    """A fully qualified name's trailing dot is not part of the name a server or a
    certificate knows (RFC 6066: no trailing dot in SNI)."""
    return name[:-1] if name.endswith(".") else name


def _tls_failure(exc: BaseException) -> TlsFailure:
    """The handshake's failure, typed where the layer knows the symptom for sure: a
    certificate that did not verify means the handshake itself completed."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CertificateInvalid(_tls_detail(exc))
    return TlsFailure(_tls_detail(exc))


def _tls_detail(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "TLS handshake got no answer in time"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ConnectionResetError) and not str(exc):
        return "connection closed during the TLS handshake"
    return classify.describe(exc)
