"""The quic prober: a QUIC v1 handshake (TLS 1.3 with the check's SNI, ALPN h3) over UDP,
driven by aioquic's sans-I/O connection on a socket of our own, so that a path that never
answers (udp_timeout) is told apart from one that answered and then stalled (tls_timeout)."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from typing import cast

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted
from aioquic.quic.packet import QuicErrorCode

from exporter import trust
from exporter.classify import describe
from exporter.config.model import Check, QuicOptions
from exporter.errors import CertificateInvalid, TlsFailure, TlsTimeout, UdpFailure, UdpTimeout
from exporter.probeenv import ProbeEnv
from exporter.probes._quicpeek import early_close
from exporter.probes._udp import MAX_DATAGRAMS, connected_socket, probe_addresses
from exporter.result import PHASE_TLS, Result

ALPN = ["h3"]
# TLS alerts (RFC 8446 6.2) that our own certificate check sends: bad_certificate,
# unsupported_certificate, certificate_revoked, certificate_expired, certificate_unknown,
# unknown_ca. aioquic closes with CRYPTO_ERROR + alert when verification fails.
_CERT_ALERTS = {42, 43, 44, 45, 46, 48}


def _configuration(options: QuicOptions, ca_file: str | None) -> QuicConfiguration:
    configuration = QuicConfiguration(is_client=True, alpn_protocols=ALPN, server_name=options.sni)
    if options.verify:
        configuration.verify_mode = ssl.CERT_REQUIRED
        trust.load_quic_trust(configuration, ca_file)
    else:
        configuration.verify_mode = ssl.CERT_NONE
    return configuration


@dataclasses.dataclass
class _Handshaken:
    detail: str
    handshake: float


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
        if self.received > MAX_DATAGRAMS:
            target = f"{self.address[0]}:{self.address[1]}"
            self._finish(UdpFailure(f"{target}: flooded: {self.received} datagrams, no handshake"))
            return
        # The socket is connected, so every datagram is from the target; the address we
        # connected to is the one path aioquic knows (the kernel may spell it differently).
        self.connection.receive_datagram(data, self.address, now=self.loop.time())
        self._advance()

    def error_received(self, exc: Exception) -> None:
        self._finish(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_timer()
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
        if self.closed is None and (closed := early_close(self.connection)) is not None:
            self.closed = closed
            self._finish(None)
        self.cancel_timer()
        if not self.done.done():
            timer = self.connection.get_timer()
            if timer is not None:
                self._timer = self.loop.call_at(timer, self._on_timer)

    def flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        for data, _ in self.connection.datagrams_to_send(now=self.loop.time()):
            self.transport.sendto(data)

    def cancel_timer(self) -> None:
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


def _terminated(event: ConnectionTerminated, target: str) -> TlsFailure:
    """The failure a close before the handshake completed amounts to."""
    code = event.error_code
    reason = event.reason_phrase or "no reason given"
    if code == QuicErrorCode.NO_ERROR:
        return TlsFailure(f"{target}: closed before the handshake completed")
    if QuicErrorCode.CRYPTO_ERROR <= code < QuicErrorCode.CRYPTO_ERROR + 256:
        alert = code - QuicErrorCode.CRYPTO_ERROR
        if alert in _CERT_ALERTS:
            return CertificateInvalid(f"{target}: certificate: {reason}")
        return TlsFailure(f"{target}: TLS alert {alert}: {reason}")
    return TlsFailure(f"{target}: connection closed ({code:#x}): {reason}")


async def _handshake_once(
    address: str, port: int, configuration: QuicConfiguration, deadline: float
) -> _Handshaken:
    loop = asyncio.get_running_loop()
    target = f"{address}:{port}"
    connection = QuicConnection(configuration=configuration)
    started = loop.time()
    try:
        transport, client = await loop.create_datagram_endpoint(
            lambda: _Handshake(connection, (address, port)), sock=connected_socket(address, port)
        )
    except OSError as exc:
        raise UdpFailure(f"{target}: cannot send: {describe(exc)}") from exc
    try:
        async with asyncio.timeout_at(deadline):
            await asyncio.shield(client.done)
    except TimeoutError:
        if client.received == 0:
            raise UdpTimeout(f"{target}: no answer to the QUIC Initial") from None
        raise TlsTimeout(
            f"{target}: handshake stalled after {client.received} datagram(s) from the server"
        ) from None
    except OSError as exc:
        # ECONNREFUSED is ICMP port unreachable; EHOSTUNREACH, ENETUNREACH the others.
        raise UdpFailure(f"{target}: {describe(exc)}") from exc
    finally:
        client.cancel_timer()
        if not transport.is_closing():
            # Say goodbye so that the server frees the connection now, not at its idle timeout.
            connection.close()
            client.flush()
        transport.close()
        # connection_lost comes later and would leave an exception nobody retrieves.
        client.done.cancel()
    if client.completed_at is not None:
        elapsed = client.completed_at - started
        return _Handshaken(f"{target}: QUIC v1 handshake complete (ALPN h3)", elapsed)
    if client.closed is not None:
        raise _terminated(client.closed, target)
    raise TlsFailure(f"{target}: connection ended before the handshake")


async def probe(check: Check, env: ProbeEnv, deadline: float) -> Result:
    options = check.options
    assert isinstance(options, QuicOptions)
    # Built once per configuration: loading the roots costs more than a handshake.
    configuration = env.shared(
        ("quic", options.sni, options.verify),
        lambda: _configuration(options, env.config.ca_file),
    )
    answered = await probe_addresses(
        check,
        env,
        deadline,
        lambda address, until: _handshake_once(address, check.port, configuration, until),
    )
    if isinstance(answered, Result):
        return answered
    result, handshake = answered.result, answered.seen
    result.phases[PHASE_TLS] = handshake.handshake
    result.detail = handshake.detail
    return result
