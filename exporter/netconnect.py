"""The connection layers every network probe shares: resolve a target, open TCP to its addresses
in turn, and run a TLS handshake over that connection. Each step times its phase and, when it
fails, raises the typed failure of that layer (`exporter.errors`), so callers never have to
guess from a generic exception which layer broke. The byte stream itself is
`exporter.stream`."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
from collections.abc import Sequence

from exporter.config import Check
from exporter.errors import ResolveFailure, TcpFailure, TcpTimeout, TlsFailure
from exporter.probeenv import ProbeEnv
from exporter.resolve import resolve_target
from exporter.result import PHASE_CONNECT, PHASE_RESOLVE, Phases
from exporter.stream import Stream, open_stream
from exporter.timeshare import address_deadline
from exporter.verdicts import Verdict

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
                    socket.AF_INET6 if ":" in address else socket.AF_INET,
                    socket.SOCK_STREAM | _NONBLOCK,
                )
                await _connect(loop, sock, address, port, until)
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


# Made non-blocking at birth: no separate ioctl per connection.
_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)


async def _connect(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, address: str, port: int, until: float
) -> None:
    """Connect `sock` (non-blocking) to an IP address by `until`, raising OSError as
    loop.sock_connect would (TimeoutError past `until`).

    One future woken by the writer callback and one plain timer: loop.sock_connect inside
    asyncio.timeout_at did the same with a resolve step for an address that is already one,
    two done-callbacks and a timeout context, about 40 Python calls more per connection."""
    if not _NONBLOCK:
        sock.setblocking(False)
    error = sock.connect_ex((address, port))
    if error == 0:
        return
    if error not in _IN_PROGRESS:
        raise OSError(error, os.strerror(error))
    fd = sock.fileno()
    connected: asyncio.Future[None] = loop.create_future()
    loop.add_writer(fd, _writable, connected)
    timer = loop.call_at(until, _expire, connected)
    try:
        await connected
    finally:
        timer.cancel()
        loop.remove_writer(fd)
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error != 0:
        # The wording loop.sock_connect gives a failure it learns of later.
        where = (address, port, 0, 0) if sock.family == socket.AF_INET6 else (address, port)
        raise OSError(error, f"Connect call failed {where}")


_IN_PROGRESS = (errno.EINPROGRESS, errno.EAGAIN, errno.EINTR)


def _writable(connected: asyncio.Future[None]) -> None:
    if not connected.done():
        connected.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _join(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


# -- TLS -------------------------------------------------------------------------------------


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

    The socket goes to a plain transport first and TLS runs inside the stream over it, so
    that a failed or cancelled handshake aborts that transport, which closes the socket.
    Handing the socket to `create_connection(ssl=...)` instead leaves no handle to abort: when
    the handshake completes in the loop iteration that also cancels it (its deadline, or
    run_check's overrun cut, under load), asyncio answers the cancellation with a graceful TLS
    shutdown that keeps the transport alive for up to 30 s, and closing the socket under it
    frees a descriptor number that asyncio still maps to that live transport: the next
    socket() gets the number and asyncio refuses it ("File descriptor N is used by
    transport")."""
    stream = await open_stream(sock)
    if stream.buffered:
        # Bytes before our ClientHello: no TLS server speaks first (a banner, a blockpage).
        stream.close()
        raise TlsFailure("the server sent data before the ClientHello: not TLS")
    return await stream.start_tls(context, server_hostname, deadline, phases)
