"""Just enough HTTP/1.1 for the lab's sites: a small page, a big file streamed without end (so
that freezes and throttling show in a transfer), an upload sink, a data centre answering
POST, the ISP's blockpage, a transparent proxy that answers nothing, and what a transparent
proxy may answer in place of a blocked site (451, garbage, plain HTTP where TLS was expected)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import urllib.parse

PAGE = b"<!doctype html><title>lab</title><p>Hello from %s. " + b"x" * 512 + b"</p>\n"
BLOCKPAGE_HOST = "blockpage.domestic.lab"
BLOCKPAGE = (
    b"<!doctype html><title>Access restricted</title><p>Access to this resource is restricted "
    b"by decision of the lab censor. See http://blockpage.domestic.lab/ for details.</p>\n"
)
# Small writes make small TLS records: a client whose connection freezes after 16 KB has
# then decrypted most of what arrived, as with the CDNs that the freeze hits.
CHUNK = 4 * 1024
# The big file never ends by itself: the client stops reading at min_bytes. A bound keeps a
# client that never stops from streaming forever.
BIG_LIMIT = 64 * 1024 * 1024
READ_LIMIT = 64 * 1024
BIG_SEND_BUFFER = 4 * 1024


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]] | None:
    try:
        line = await asyncio.wait_for(reader.readline(), 10)
        parts = line.decode("latin-1").split()
        if len(parts) < 2:
            return None
        headers: dict[str, str] = {}
        while True:
            header = await asyncio.wait_for(reader.readline(), 10)
            if header in (b"\r\n", b"\n", b""):
                break
            key, _, value = header.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        return parts[0], parts[1], headers
    except (TimeoutError, ValueError, asyncio.LimitOverrunError):
        return None


def _response(status: str, body: bytes, extra: str = "", content_type: str = "text/html") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    )
    return head.encode("latin-1") + body


async def _finish(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        await writer.drain()
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 2)
    writer.transport.abort()


async def serve_site(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Every lab site: `/` a small page naming the host, `/big` an endless body, `/upload`
    a sink that reads a POST body and discards it."""
    try:
        head = await _read_head(reader)
        if head is None:
            return
        _, target, headers = head
        path = urllib.parse.urlsplit(target).path
        host = headers.get("host", "?").encode("latin-1", "replace")
        if path == "/upload":
            # The upload sink: read the body and throw it away, then say so.
            length = int(headers.get("content-length", "0") or 0)
            while length > 0:
                piece = await asyncio.wait_for(reader.read(min(READ_LIMIT, length)), 10)
                if not piece:
                    return
                length -= len(piece)
            writer.write(_response("200 OK", b"received\n", content_type="text/plain"))
        elif path == "/big":
            # A small send buffer bounds what a connection has in flight, and with it the
            # queue a throttled connection leaves at the censor's shaper when the client
            # gives up: well under a second at 128 kbit/s, so the next run's handshake is
            # not stuck behind the last run's data.
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BIG_SEND_BUFFER)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                b"connection: close\r\n\r\n"
            )
            chunk = b"\0" * CHUNK
            for _ in range(BIG_LIMIT // CHUNK):
                writer.write(chunk)
                await writer.drain()
        elif path == "/":
            writer.write(_response("200 OK", PAGE % host))
        else:
            writer.write(_response("404 Not Found", b"not found\n", content_type="text/plain"))
        await _finish(writer)
    except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError):
        writer.transport.abort()


async def serve_dc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A messenger data centre's HTTP side: any request, POST included, gets an answer (the
    application answer that a transparent proxy in the path cannot give)."""
    try:
        head = await _read_head(reader)
        if head is not None:
            length = int(head[2].get("content-length", "0") or 0)
            if length:
                await asyncio.wait_for(reader.readexactly(min(length, READ_LIMIT)), 10)
            writer.write(_response("404 Not Found", b"", content_type="text/plain"))
        await _finish(writer)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        writer.transport.abort()


async def serve_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A transparent proxy that completes every TCP handshake and then answers nothing."""
    with contextlib.suppress(OSError, TimeoutError):
        while await asyncio.wait_for(reader.read(READ_LIMIT), 60):
            pass
    writer.transport.abort()


async def serve_blockpage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The ISP's blockpage host: a request for any other site (it arrives here by a DNS lie or
    by the censor's redirection) is sent to the blockpage, which is served."""
    try:
        head = await _read_head(reader)
        if head is None:
            return
        _, target, headers = head
        host = headers.get("host", "").split(":")[0]
        if host == BLOCKPAGE_HOST:
            writer.write(_response("200 OK", BLOCKPAGE))
        else:
            blocked = urllib.parse.quote(f"{host}{target}", safe="")
            location = f"http://{BLOCKPAGE_HOST}/?blocked={blocked}"
            writer.write(_response("302 Found", b"", extra=f"location: {location}\r\n"))
        await _finish(writer)
    except (OSError, ssl.SSLError):
        writer.transport.abort()


async def serve_451(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A transparent proxy's refusal without a recognisable blockpage."""
    try:
        if await _read_head(reader) is not None:
            writer.write(_response("451 Unavailable For Legal Reasons", b"unavailable\n"))
        await _finish(writer)
    except OSError:
        writer.transport.abort()


async def serve_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Bytes that are not an HTTP response, after the request."""
    try:
        await _read_head(reader)
        writer.write(b"\x00\x01\x02 this is not HTTP at all \xff\xfe\r\n\r\n")
        await _finish(writer)
    except OSError:
        writer.transport.abort()


async def serve_plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Plain HTTP on a port where TLS was expected: answers a ClientHello with a 400."""
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.read(READ_LIMIT), 5)
        writer.write(_response("400 Bad Request", b"plain HTTP here\n", content_type="text/plain"))
        await _finish(writer)
    except OSError:
        writer.transport.abort()
