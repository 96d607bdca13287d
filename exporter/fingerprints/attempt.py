"""Send one browser-shaped ClientHello over a fresh TCP connection and report whether a
ServerHello came back. A censor that judges ClientHellos answers the shape it dislikes with
a reset, silence or an alert; the server's certificate is never looked at (the check's own
handshake judges that)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket

from exporter.errors import ProbeFailure
from exporter.fingerprints import hello
from exporter.netconnect import open_tcp

# A HelloRetryRequest is a ServerHello with this random (RFC 8446 4.1.3): the server took
# the hello and wants another key share, which still proves the hello got through.
HELLO_RETRY_RANDOM = bytes.fromhex(
    "CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C"
)
_ALERT = 21
_HANDSHAKE = 22
_SERVER_HELLO = 2
# The record header, the handshake header, the legacy version and the random.
_NEEDED = 5 + 4 + 2 + 32


@dataclasses.dataclass(frozen=True)
class ShapeOutcome:
    shape: str
    ok: bool
    detail: str


async def try_shape(
    shape_name: str, address: str, port: int, server_name: str, deadline: float
) -> ShapeOutcome:
    """One attempt with the shape named `shape_name`; never raises for a network failure."""
    shape = hello.load(shape_name)
    label = f"{shape.browser} {shape.version.split()[0]} ClientHello"
    try:
        connection = await open_tcp([address], port, deadline)
    except ProbeFailure as failure:
        return ShapeOutcome(shape_name, False, f"{label}: {failure.detail}")
    sock = connection.sock
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(deadline):
            await loop.sock_sendall(sock, hello.client_hello(shape, server_name))
            answer = await _first_bytes(loop, sock)
    except TimeoutError:
        return ShapeOutcome(shape_name, False, f"{label}: no answer in time")
    except OSError as exc:
        return ShapeOutcome(shape_name, False, f"{label}: {type(exc).__name__}: {exc.strerror}")
    finally:
        sock.close()
    return _judge(shape_name, label, answer)


async def try_shapes(
    names: tuple[str, ...], address: str, port: int, server_name: str, deadline: float
) -> list[ShapeOutcome]:
    """Every listed shape at once, each on its own connection."""
    return list(
        await asyncio.gather(*(try_shape(n, address, port, server_name, deadline) for n in names))
    )


async def _first_bytes(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    data = b""
    while len(data) < _NEEDED:
        piece = await loop.sock_recv(sock, 4096)
        if not piece:
            break
        data += piece
        if data[:1] == bytes([_ALERT]) and len(data) >= 7:
            break
    return data


def _judge(shape_name: str, label: str, answer: bytes) -> ShapeOutcome:
    if not answer:
        return ShapeOutcome(shape_name, False, f"{label}: closed without an answer")
    if answer[0] == _ALERT and len(answer) >= 7:
        return ShapeOutcome(shape_name, False, f"{label}: alert {answer[6]} (level {answer[5]})")
    if answer[0] == _HANDSHAKE and len(answer) > 5 and answer[5] == _SERVER_HELLO:
        kind = "HelloRetryRequest" if answer[11:43] == HELLO_RETRY_RANDOM else "ServerHello"
        return ShapeOutcome(shape_name, True, f"{label}: {kind}")
    return ShapeOutcome(shape_name, False, f"{label}: not a ServerHello: {answer[:16].hex()}")
