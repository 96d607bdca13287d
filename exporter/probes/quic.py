"""The quic prober: a QUIC v1 handshake (TLS 1.3 with the check's SNI, ALPN h3) over UDP,
driven by aioquic's sans-I/O connection on a socket of our own, so that a path that never
answers (udp_timeout) is told apart from one that answered and then stalled (tls_timeout)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ssl
from pathlib import Path
from typing import cast

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted
from aioquic.quic.packet import QuicErrorCode

from exporter.classify import describe
from exporter.config import Check, QuicOptions
from exporter.probeenv import ProbeEnv
from exporter.probes._udp import MIN_ADDRESS_BUDGET, address_deadline, connected_socket
from exporter.resolve import resolve_target
from exporter.result import PHASE_RESOLVE, PHASE_TLS, Result
from exporter.verdicts import Verdict

ALPN = ["h3"]
# TLS alerts (RFC 8446 6.2) that our own certificate check sends: bad_certificate,
# unsupported_certificate, certificate_revoked, certificate_expired, certificate_unknown,
# unknown_ca. aioquic closes with CRYPTO_ERROR + alert when verification fails.
_CERT_ALERTS = {42, 43, 44, 45, 46, 48}

_verify_paths = ssl.get_default_verify_paths()
# The system roots as OpenSSL's hashed directory: looked up lazily, one file per issuer,
# where the bundle file would be parsed whole on every handshake (aioquic builds a new
# store each time). Without such a directory, the bundle it is.
_SYSTEM_CAPATH = (
    _verify_paths.capath
    if _verify_paths.capath and any(Path(_verify_paths.capath).glob("*.0"))
    else None
)
_SYSTEM_CAFILE = None if _SYSTEM_CAPATH else _verify_paths.cafile


@functools.cache
def _system_bundle() -> bytes:
    return Path(_SYSTEM_CAFILE).read_bytes() if _SYSTEM_CAFILE else b""


def _configuration(options: QuicOptions, ca_file: str | None) -> QuicConfiguration:
    configuration = QuicConfiguration(is_client=True, alpn_protocols=ALPN, server_name=options.sni)
    if options.verify:
        configuration.verify_mode = ssl.CERT_REQUIRED
        # Trust what the TLS probes trust: the system roots plus `defaults.ca_file` (aioquic
        # would otherwise use certifi's). The roots go in as the hashed directory where
        # there is one, which leaves aioquic's single file slot to ca_file.
        if ca_file and _SYSTEM_CAFILE:
            # No hashed directory and two files: the system bundle goes in as data (parsed
            # per handshake, the price of such a system).
            configuration.load_verify_locations(cafile=ca_file, cadata=_system_bundle())
        else:
            configuration.load_verify_locations(
                cafile=ca_file or _SYSTEM_CAFILE, capath=_SYSTEM_CAPATH
            )
    else:
        configuration.verify_mode = ssl.CERT_NONE
    return configuration


@dataclasses.dataclass
class _Outcome:
    verdict: Verdict
    detail: str
    handshake: float | None = None


class _Handshake(asyncio.DatagramProtocol):
    """Feeds a QuicConnection from a connected UDP socket and its timers, until the
    handshake completes or the connection closes."""

    def __init__(self, connection: QuicConnection, address: tuple[str, int]) -> None:
        self.loop = asyncio.get_running_loop()
        self.connection = connection
        self.address = address
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0
        self.completed_at: float | None = None
        self.closed: ConnectionTerminated | None = None  # how the connection ended, if it did
        self.done: asyncio.Future[None] = self.loop.create_future()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.connection.connect(self.address, now=self.loop.time())
        self._advance()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received += 1
        # The socket is connected, so every datagram is from the target; the address we
        # connected to is the one path aioquic knows (the kernel may spell it differently).
        self.connection.receive_datagram(data, self.address, now=self.loop.time())
        self._advance()

    def error_received(self, exc: Exception) -> None:
        self._finish(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._finish(exc or ConnectionError("socket closed"))

    def _on_timer(self) -> None:
        self._timer = None
        self.connection.handle_timer(now=self.loop.time())
        self._advance()

    def _advance(self) -> None:
        while (event := self.connection.next_event()) is not None:
            if isinstance(event, HandshakeCompleted):
                self.completed_at = self.loop.time()
                self._finish(None)
            elif isinstance(event, ConnectionTerminated):
                self.closed = event
                self._finish(None)
        self.flush()
        # The public ConnectionTerminated event only comes after the draining period (three
        # probe timeouts); the close itself is known at once, so stop there.
        if self.closed is None and self.connection._close_event is not None:
            self.closed = self.connection._close_event
            self._finish(None)
        self._cancel_timer()
        if not self.done.done():
            timer = self.connection.get_timer()
            if timer is not None:
                self._timer = self.loop.call_at(timer, self._on_timer)

    def flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        for data, _ in self.connection.datagrams_to_send(now=self.loop.time()):
            self.transport.sendto(data)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _finish(self, exc: BaseException | None) -> None:
        if self.done.done():
            return
        if exc is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(exc)


def _terminated(event: ConnectionTerminated, target: str) -> _Outcome:
    code = event.error_code
    reason = event.reason_phrase or "no reason given"
    if code == QuicErrorCode.NO_ERROR:
        return _Outcome(Verdict.TLS_ERROR, f"{target}: closed before the handshake completed")
    if QuicErrorCode.CRYPTO_ERROR <= code < QuicErrorCode.CRYPTO_ERROR + 256:
        alert = code - QuicErrorCode.CRYPTO_ERROR
        if alert in _CERT_ALERTS:
            return _Outcome(Verdict.TLS_CERT_INVALID, f"{target}: certificate: {reason}")
        return _Outcome(Verdict.TLS_ERROR, f"{target}: TLS alert {alert}: {reason}")
    return _Outcome(Verdict.TLS_ERROR, f"{target}: connection closed ({code:#x}): {reason}")


async def _handshake_once(
    address: str, port: int, configuration: QuicConfiguration, deadline: float
) -> _Outcome:
    loop = asyncio.get_running_loop()
    target = f"{address}:{port}"
    connection = QuicConnection(configuration=configuration)
    started = loop.time()
    try:
        transport, client = await loop.create_datagram_endpoint(
            lambda: _Handshake(connection, (address, port)), sock=connected_socket(address, port)
        )
    except OSError as exc:
        return _Outcome(Verdict.UDP_ERROR, f"{target}: cannot send: {describe(exc)}")
    try:
        async with asyncio.timeout_at(deadline):
            await asyncio.shield(client.done)
    except TimeoutError:
        if client.received == 0:
            return _Outcome(Verdict.UDP_TIMEOUT, f"{target}: no answer to the QUIC Initial")
        return _Outcome(
            Verdict.TLS_TIMEOUT,
            f"{target}: handshake stalled after {client.received} datagram(s) from the server",
        )
    except OSError as exc:
        # ECONNREFUSED is ICMP port unreachable; EHOSTUNREACH, ENETUNREACH the others.
        return _Outcome(Verdict.UDP_ERROR, f"{target}: {describe(exc)}")
    finally:
        client._cancel_timer()
        if not transport.is_closing():
            # Say goodbye so that the server frees the connection now, not at its idle timeout.
            connection.close()
            client.flush()
        transport.close()
        # connection_lost comes later and would leave an exception nobody retrieves.
        client.done.cancel()
    if client.completed_at is not None:
        elapsed = client.completed_at - started
        return _Outcome(Verdict.OK, f"{target}: QUIC v1 handshake complete (ALPN h3)", elapsed)
    if client.closed is not None:
        return _terminated(client.closed, target)
    return _Outcome(Verdict.TLS_ERROR, f"{target}: connection ended before the handshake")


async def probe(check: Check, env: ProbeEnv, deadline: float) -> Result:
    assert isinstance(check.options, QuicOptions)
    resolution = await resolve_target(check, env, deadline)
    phases = {PHASE_RESOLVE: resolution.duration}
    if resolution.verdict is not Verdict.OK:
        return Result(resolution.verdict, detail=resolution.detail, phases=phases)
    addresses = list(resolution.addresses)
    if not addresses:
        return Result(Verdict.UDP_ERROR, detail="no address to send to", phases=phases)
    configuration = _configuration(check.options, env.config.ca_file)
    loop = asyncio.get_running_loop()
    failures: list[_Outcome] = []
    for index, address in enumerate(addresses):
        if deadline - loop.time() < MIN_ADDRESS_BUDGET and failures:
            break
        until = address_deadline(deadline, len(addresses) - index)
        outcome = await _handshake_once(address, check.port, configuration, until)
        if outcome.verdict is Verdict.OK:
            phases[PHASE_TLS] = outcome.handshake or 0.0
            return Result(
                Verdict.OK,
                detail=outcome.detail,
                phases=phases,
                addresses=addresses,
                address=address,
            )
        failures.append(outcome)
    # An answer of any kind says more about the path than silence does.
    worst = next((f for f in failures if f.verdict is not Verdict.UDP_TIMEOUT), failures[0])
    return Result(
        worst.verdict,
        detail="; ".join(f.detail for f in failures),
        phases=phases,
        addresses=addresses,
    )
