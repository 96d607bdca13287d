"""A tiny proxy beyond the censor, standing in for a user's VPN or proxy: SOCKS5 (no auth,
CONNECT, names resolved here as a VPN would) and HTTP (CONNECT tunnels, and absolute-URI
requests for http:// URLs). Names resolve through the lab's honest zone."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
import urllib.parse
from collections.abc import Mapping

CONNECT_TIMEOUT = 5.0
PIPE_CHUNK = 64 * 1024


class Proxy:
    def __init__(self, zone: Mapping[str, str]) -> None:
        self.zone = dict(zone)

    async def _open(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        address = self.zone.get(host.rstrip(".").lower(), host)
        return await asyncio.wait_for(asyncio.open_connection(address, port), CONNECT_TIMEOUT)

    async def socks5(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            version, count = await reader.readexactly(2)
            methods = await reader.readexactly(count)
            if version != 5 or 0 not in methods:
                writer.write(b"\x05\xff")
                return
            writer.write(b"\x05\x00")
            _, command, _, atyp = await reader.readexactly(4)
            if atyp == 1:
                host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
            elif atyp == 4:
                host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
            elif atyp == 3:
                host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
            else:
                writer.write(b"\x05\x08\x00\x01" + bytes(6))
                return
            (port,) = struct.unpack("!H", await reader.readexactly(2))
            if command != 1:
                writer.write(b"\x05\x07\x00\x01" + bytes(6))
                return
            try:
                upstream = await self._open(host, port)
            except (OSError, TimeoutError):
                writer.write(b"\x05\x05\x00\x01" + bytes(6))  # connection refused
                return
            writer.write(b"\x05\x00\x00\x01" + socket.inet_aton("0.0.0.0") + b"\0\0")
            await _splice(reader, writer, *upstream)
        except (OSError, asyncio.IncompleteReadError, UnicodeDecodeError, ValueError):
            pass
        finally:
            writer.transport.abort()

    async def http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode("latin-1")
            head = [request_line]
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                head.append(line.decode("latin-1"))
            method, target, version = request_line.split()
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                try:
                    upstream = await self._open(host.strip("[]"), int(port))
                except (OSError, TimeoutError):
                    writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                    return
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await _splice(reader, writer, *upstream)
                return
            url = urllib.parse.urlsplit(target)
            if url.scheme != "http" or not url.hostname:
                writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                return
            up_reader, up_writer = await self._open(url.hostname, url.port or 80)
            path = url.path or "/"
            if url.query:
                path += "?" + url.query
            kept = [h for h in head[1:] if not h.lower().startswith("proxy-")]
            up_writer.write(f"{method} {path} {version}\r\n{''.join(kept)}\r\n".encode("latin-1"))
            await _splice(reader, writer, up_reader, up_writer)
        except (OSError, ValueError, TimeoutError):
            pass
        finally:
            writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(PIPE_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


async def _splice(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    try:
        await writer.drain()
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    finally:
        up_writer.transport.abort()
