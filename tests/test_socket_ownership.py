"""Every socket a probe opens is closed once, by whoever owns it then: never by us after a
transport has taken it. A descriptor closed under a live transport is reused by the next
socket(), and asyncio then refuses that socket ("File descriptor N is used by transport"),
turning a healthy check into `error`. Real TLS servers on loopback; the event loop is stalled
on purpose so that a handshake's completion and its cut-off land in one loop iteration, as
they do when the exporter is busy."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from exporter.errors import TlsFailure
from exporter.netconnect import open_tcp, tls_handshake
from exporter.stream import Stream
from peers import certs, webservers

NAME = "tls.test"
# The handshake is cut this long after it starts; the loop is stalled past that meanwhile.
CUT_AFTER = 0.3
STALL = 0.6


@pytest.fixture(scope="module")
def tls_port() -> Iterator[int]:
    handler = webservers.tls_handler(certs.server_context(certs.issue(NAME)))
    with webservers.serve(handler) as port:
        yield port


def _client_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certs.ca_pem_path())


async def _own_deadline(sock: socket.socket) -> Stream:
    """The handshake's own deadline expires."""
    loop = asyncio.get_running_loop()
    return await tls_handshake(sock, _client_context(), NAME, loop.time() + CUT_AFTER)


async def _cut_from_outside(sock: socket.socket) -> Stream:
    """A handshake with time to spare, cancelled by an enclosing timeout: run_check's
    overrun cut, which cancels a probe wherever it is."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(CUT_AFTER):
        return await tls_handshake(sock, _client_context(), NAME, loop.time() + 5)


def _stall_the_loop(seconds: float) -> None:
    """Block the event loop, as a busy exporter does, while the server (in its own thread)
    answers: on waking, the loop handles the server's flight and the expired cut-off in
    the same iteration."""
    time.sleep(seconds)


async def _fresh_connections_work(port: int, count: int) -> None:
    """Open `count` sockets at once (they take the lowest free descriptors, so a number left
    mapped to a live transport comes back) and connect each."""
    loop = asyncio.get_running_loop()
    connections = [await open_tcp(["127.0.0.1"], port, loop.time() + 5) for _ in range(count)]
    for connection in connections:
        connection.close()


@pytest.mark.parametrize("turns_before_stall", range(1, 7))
@pytest.mark.parametrize("handshake", [_own_deadline, _cut_from_outside])
async def test_handshake_cut_off_as_it_completes_frees_its_descriptor(
    tls_port: int,
    handshake: Callable[[socket.socket], Awaitable[Stream]],
    turns_before_stall: int,
) -> None:
    loop = asyncio.get_running_loop()
    connection = await open_tcp(["127.0.0.1"], tls_port, loop.time() + 5)
    running = asyncio.ensure_future(handshake(connection.sock))
    # A few loop turns let the ClientHello go out (how many it takes varies, hence the
    # parameter); then the stall.
    for _ in range(turns_before_stall):
        await asyncio.sleep(0)
    _stall_the_loop(STALL)
    try:
        stream = await running
    except (TlsFailure, TimeoutError):
        pass
    else:
        stream.close()
    await _fresh_connections_work(tls_port, 4)
