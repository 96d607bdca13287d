"""A TLS connection costs its receive buffer in resident memory for as long as it is open;
asyncio's default is 256 KiB, zero-filled, which at 10,000 checks was ~50 MB of the exporter's
peak. Probes run TLS in their own stream and allocate no such buffer; what still uses asyncio's
TLS (DNS over HTTPS, through httpx) receives into the smaller buffer exporter/sslbuffer.py sets.
Against a real TLS server on loopback."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator

import pytest

import exporter.probes  # noqa: F401  (what every probe path imports)
from exporter.sslbuffer import TLS_RECEIVE_BUFFER
from peers import certs, webservers


@pytest.fixture
def tls_port() -> Iterator[int]:
    context = certs.server_context(certs.issue("web.test", "127.0.0.1"))
    with webservers.serve(webservers.tls_handler(context)) as port:
        yield port


def test_a_probes_tls_connection_receives_into_a_64_kib_buffer(tls_port: int) -> None:
    async def buffer_size() -> int:
        context = ssl.create_default_context(cafile=certs.ca_pem_path())
        transport, _ = await asyncio.get_running_loop().create_connection(
            asyncio.Protocol, "127.0.0.1", tls_port, ssl=context, server_hostname="web.test"
        )
        try:
            protocol = transport.get_protocol()
            # The transport the caller sees wraps the SSL protocol that owns the buffer.
            ssl_protocol = transport._ssl_protocol  # type: ignore[attr-defined]
            assert protocol is not ssl_protocol
            return len(ssl_protocol._ssl_buffer)
        finally:
            transport.close()

    size = asyncio.run(buffer_size())
    assert size == TLS_RECEIVE_BUFFER == 64 * 1024


def test_a_tls_probes_handshake_creates_no_asyncio_ssl_protocol(tls_port: int) -> None:
    """Probes run TLS inside their own stream over the plain transport (exporter/tlsbio.py),
    so an open probe connection holds an SSL object and two memory buffers, not asyncio's SSL
    protocol with its receive buffer."""
    import asyncio.sslproto
    import gc

    from exporter.netconnect import open_tcp, tls_handshake

    async def protocols_while_open() -> tuple[int, float | None]:
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context(cafile=certs.ca_pem_path())
        connection = await open_tcp(["127.0.0.1"], tls_port, loop.time() + 5)
        stream = await tls_handshake(connection.sock, context, "web.test", loop.time() + 5)
        try:
            count = sum(isinstance(o, asyncio.sslproto.SSLProtocol) for o in gc.get_objects())
            return count, stream.cert_expiry()
        finally:
            stream.close()

    gc.collect()
    count, expiry = asyncio.run(protocols_while_open())
    assert count == 0
    assert expiry is not None  # the handshake verified the certificate
