"""How a probe's TLS stream (TLS run in place over the plain connection, exporter/tlsbio.py)
ends, against real TLS servers on loopback: close_notify and a bare FIN end the stream
cleanly after the data before them, a record that does not decrypt is an error, and data
that arrives in the same segment as the end of the handshake is not lost; and a stream over
a connected socket is ready in the loop turn it is made in."""

from __future__ import annotations

import asyncio
import selectors
import socket
import ssl
from collections.abc import Callable

import pytest

from exporter.netconnect import open_tcp, tls_handshake
from exporter.stream import Stream, open_stream
from peers import certs, webservers

Serve = Callable[[ssl.SSLSocket], None]


def _tls_server(then: Serve) -> webservers.Handler:
    context = certs.server_context(certs.issue("web.test", "127.0.0.1"))

    def handle(sock: socket.socket) -> None:
        sock.settimeout(10)
        tls = context.wrap_socket(sock, server_side=True)
        then(tls)

    return handle


async def _read_all(stream: Stream) -> bytes:
    data = b""
    while chunk := await stream.read(65536):
        data += chunk
    return data


def _exchange(handler: webservers.Handler, request: bytes | None = b"hello") -> bytes:
    """Handshake with the server, send `request` (if any), read until the stream ends."""

    async def run() -> bytes:
        loop = asyncio.get_running_loop()
        with webservers.serve(handler) as port:
            context = ssl.create_default_context(cafile=certs.ca_pem_path())
            connection = await open_tcp(["127.0.0.1"], port, loop.time() + 5)
            stream = await tls_handshake(connection.sock, context, "web.test", loop.time() + 5)
            try:
                if request is not None:
                    stream.write(request)
                async with asyncio.timeout(5):
                    return await _read_all(stream)
            finally:
                stream.close()

    return asyncio.run(run())


def _answer_then(end: Callable[[ssl.SSLSocket], None]) -> Serve:
    def serve(tls: ssl.SSLSocket) -> None:
        request = tls.recv(100)
        tls.sendall(b"you said " + request + b"; " + b"x" * 100_000)
        end(tls)

    return serve


def test_close_notify_ends_the_stream_after_everything_sent_before_it() -> None:
    def close_notify(tls: ssl.SSLSocket) -> None:
        tls.unwrap().close()

    data = _exchange(_tls_server(_answer_then(close_notify)))
    assert data == b"you said hello; " + b"x" * 100_000


def test_a_bare_fin_after_the_data_ends_the_stream_like_any_end() -> None:
    def fin(tls: ssl.SSLSocket) -> None:
        raw = socket.socket(fileno=tls.detach())
        raw.shutdown(socket.SHUT_WR)
        raw.recv(100)  # until the client goes
        raw.close()

    data = _exchange(_tls_server(_answer_then(fin)))
    assert data == b"you said hello; " + b"x" * 100_000


def test_a_record_that_does_not_decrypt_is_an_error_not_an_end() -> None:
    def garbage(tls: ssl.SSLSocket) -> None:
        tls.recv(100)
        tls.sendall(b"fine so far")
        raw = socket.socket(fileno=tls.detach())
        # An application-data record header and bytes that no key decrypts.
        raw.sendall(b"\x17\x03\x03\x00\x40" + b"\x00" * 64)
        raw.recv(100)
        raw.close()

    with pytest.raises(ssl.SSLError):
        _exchange(_tls_server(garbage))


def test_data_in_the_segment_that_ends_the_handshake_is_kept() -> None:
    """TLS 1.2: the server's Finished and its first application data can arrive together;
    the stream must deliver that data, not drop it while finishing the handshake."""
    context = certs.server_context(certs.issue("web.test", "127.0.0.1"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2

    def handle(sock: socket.socket) -> None:
        sock.settimeout(10)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=True)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                incoming.write(sock.recv(65536))
        tls.write(b"early words")  # queued behind the Finished: one send for both
        sock.sendall(outgoing.read())
        sock.shutdown(socket.SHUT_WR)
        sock.recv(100)
        sock.close()

    assert _exchange(handle, request=None) == b"early words"


class _CountingSelector(selectors.DefaultSelector):
    """The loop's selector, counting its turns (one select() per turn)."""

    turns = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.turns += 1
        return super().select(timeout)


def test_a_stream_over_a_connected_socket_is_ready_in_the_same_loop_turn() -> None:
    # create_connection(sock=...) spent a turn (and a future) waiting for its own
    # connection_made before the ClientHello could go out; a loop turn costs a tls probe
    # about as much as the rest of setting up its stream.
    selector = _CountingSelector()

    async def turns_to_open() -> int:
        loop = asyncio.get_running_loop()
        with webservers.serve(webservers.silent) as port:
            connection = await open_tcp(["127.0.0.1"], port, loop.time() + 5)
            before = selector.turns
            stream = await open_stream(connection.sock)
            turns = selector.turns - before
            try:
                assert stream.transport is not None
                stream.write(b"sent at once")
            finally:
                stream.close()
            return turns

    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selector)) as runner:
        assert runner.run(turns_to_open()) == 0
