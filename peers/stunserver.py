"""A STUN server (RFC 5389 Binding only) for the stun prober's tests and the censorship lab,
with misbehaviours switchable at run time: error responses, garbage, foreign transactions,
silence, and answering only after some retransmissions."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import struct
from typing import cast

MAGIC_COOKIE = 0x2112A442
HEADER = struct.Struct("!HHI12s")
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111
ATTR_MAPPED_ADDRESS = 0x0001
ATTR_ERROR_CODE = 0x0009
ATTR_XOR_MAPPED_ADDRESS = 0x0020
ATTR_SOFTWARE = 0x8022

# What the server does with a Binding Request.
MODES = (
    "ok",  # Binding Success with XOR-MAPPED-ADDRESS
    "classic",  # Binding Success with only MAPPED-ADDRESS (an RFC 3489 server)
    "error",  # Binding Error Response 400
    "garbage",  # random bytes
    "truncated",  # a success response cut in the middle of an attribute
    "other-transaction",  # a success response for another transaction ID (to be ignored)
    "silent",  # nothing
    "flood",  # FLOOD_COUNT messages for other transactions per request
)
FLOOD_COUNT = 2000


def _attribute(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)


def _address_value(host: str, port: int, txid: bytes, *, xor: bool) -> bytes:
    ip = ipaddress.ip_address(host)
    raw = ip.packed
    if xor:
        key = MAGIC_COOKIE.to_bytes(4, "big") + (txid if ip.version == 6 else b"")
        raw = bytes(a ^ b for a, b in zip(raw, key, strict=False))
        port ^= MAGIC_COOKIE >> 16
    return struct.pack("!BBH", 0, 1 if ip.version == 4 else 2, port) + raw


def message(kind: int, txid: bytes, attributes: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(attributes), MAGIC_COOKIE, txid) + attributes


class StunServer(asyncio.DatagramProtocol):
    """Answers Binding Requests according to `mode`; `ignore_first` requests are dropped
    first (to make the client retransmit). `requests` counts what arrived."""

    def __init__(self, mode: str = "ok", ignore_first: int = 0) -> None:
        self.mode = mode
        self.ignore_first = ignore_first
        self.requests = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < HEADER.size or self.transport is None:
            return
        kind, _, cookie, txid = HEADER.unpack_from(data)
        if kind != BINDING_REQUEST or cookie != MAGIC_COOKIE:
            return
        self.requests += 1
        if self.requests <= self.ignore_first:
            return
        if self.mode == "flood":
            for _ in range(FLOOD_COUNT):
                self.transport.sendto(message(BINDING_SUCCESS, os.urandom(12)), addr)
            return
        reply = self.reply(txid, addr[0], addr[1])
        if reply is not None:
            self.transport.sendto(reply, addr)

    def reply(self, txid: bytes, host: str, port: int) -> bytes | None:
        software = _attribute(ATTR_SOFTWARE, b"reachability-exporter test STUN server")
        if self.mode == "ok":
            xor = _attribute(ATTR_XOR_MAPPED_ADDRESS, _address_value(host, port, txid, xor=True))
            return message(BINDING_SUCCESS, txid, xor + software)
        if self.mode == "classic":
            mapped = _attribute(ATTR_MAPPED_ADDRESS, _address_value(host, port, txid, xor=False))
            return message(BINDING_SUCCESS, txid, mapped)
        if self.mode == "error":
            return message(
                BINDING_ERROR, txid, _attribute(ATTR_ERROR_CODE, b"\0\0\x04\x00Bad Request")
            )
        if self.mode == "garbage":
            return b"\x16\x03\x01 definitely not STUN " + os.urandom(16)
        if self.mode == "truncated":
            xor = _attribute(ATTR_XOR_MAPPED_ADDRESS, _address_value(host, port, txid, xor=True))
            full = message(BINDING_SUCCESS, txid, xor)
            return full[:-6]
        if self.mode == "other-transaction":
            return message(BINDING_SUCCESS, os.urandom(12))
        return None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def start(host: str = "127.0.0.1", port: int = 0, **kwargs: object) -> tuple[StunServer, int]:
    """Serve on host:port (0 picks a free port): (server, bound port)."""
    loop = asyncio.get_running_loop()
    _, server = await loop.create_datagram_endpoint(
        lambda: StunServer(**kwargs),  # type: ignore[arg-type]
        local_addr=(host, port),
    )
    assert server.transport is not None
    return server, server.transport.get_extra_info("sockname")[1]
