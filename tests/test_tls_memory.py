"""A TLS connection a probe opens costs its receive buffer in resident memory for as long as
it is open; asyncio's default is 256 KiB, zero-filled, which at 10,000 checks was ~50 MB of
the exporter's peak. Probes' TLS transports receive into the smaller buffer
exporter/sslbuffer.py sets, against a real TLS server on loopback."""

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
