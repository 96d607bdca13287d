"""The transfer prober's upload direction against real upload sinks on loopback: a sink that
reads everything, one that stops reading (its receive window closes, so the kernel stops
acknowledging: the freeze as TCP sees it), one that reads slowly, one that resets, and one
that never answers; the verdicts come from what the peer's kernel acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
import urllib.parse
from collections.abc import AsyncIterator

import pytest

from exporter.config import load_text
from exporter.probeenv import ProbeEnv
from exporter.probes import run_check
from exporter.result import Result
from exporter.verdicts import Verdict
from peers import certs

NAME = "upload.test"
KIB = 1024
# The sink's receive buffer where it stops reading: the kernel doubles it and acknowledges
# about that much before the window closes.
SMALL_RCVBUF = 8 * KIB


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, int]:
    line = (await reader.readline()).decode()
    length = 0
    while (header := await reader.readline()) not in (b"\r\n", b""):
        key, _, value = header.decode().partition(":")
        if key.strip().lower() == "content-length":
            length = int(value)
    return line.split()[1], length


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        target, length = await _read_head(reader)
        split = urllib.parse.urlsplit(target)
        args = {k: int(v[0]) for k, v in urllib.parse.parse_qs(split.query).items()}
        path = split.path
        if path == "/stop":
            # Read `after` bytes, then nothing: the window closes, acknowledgements stop.
            await reader.readexactly(args["after"])
            await asyncio.sleep(30)
            return
        if path == "/reset":
            await reader.readexactly(args["after"])
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        if path == "/slow":
            # `rate` bytes per second in 1 KiB reads.
            remaining = length
            while remaining:
                remaining -= len(await reader.read(min(KIB, remaining)))
                await asyncio.sleep(KIB / args["rate"])
        else:
            # In pieces: readexactly of more than the reader's limit waits on a paused
            # TLS transport for ever.
            remaining = length
            while remaining:
                piece = await reader.read(min(64 * KIB, remaining))
                if not piece:
                    return
                remaining -= len(piece)
        if path == "/mute":
            await asyncio.sleep(30)
            return
        status = args.get("status", 200)
        writer.write(f"HTTP/1.1 {status} Whatever\r\ncontent-length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()
    except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
        writer.transport.abort()


def _listener(rcvbuf: int | None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        # Set before listen, so every accepted connection inherits it (and its window scale).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        # Loopback's 64 KiB MSS would hold window updates back until a whole segment fits
        # (silly window avoidance); a real link's MSS lets a slow reader's window reopen.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.fixture
async def sinks() -> AsyncIterator[dict[str, int]]:
    """Upload sinks on 127.0.0.1: plain, TLS (certificate for upload.test), and a plain one
    with a small receive buffer."""
    context = certs.server_context(certs.issue(NAME))
    servers = {
        "http": await asyncio.start_server(_handle, sock=_listener(None)),
        "https": await asyncio.start_server(_handle, sock=_listener(None), ssl=context),
        # A small reader limit too, or asyncio's buffer (128 KiB) would hide the slow reader.
        "small": await asyncio.start_server(_handle, sock=_listener(SMALL_RCVBUF), limit=KIB),
    }
    try:
        yield {name: server.sockets[0].getsockname()[1] for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)


def env_for(url: str, timeout: str = "2s", options: str = "") -> ProbeEnv:
    config = load_text(
        f"""
defaults: {{ca_file: {certs.ca_pem_path()}}}
services:
  media:
    checks:
      - {{name: upload, kind: transfer, direction: upload, target: "{url}",
          timeout: {timeout}, interval: 10s, address: [127.0.0.1]{options}}}
"""
    )
    return ProbeEnv(config)


async def run(env: ProbeEnv) -> Result:
    try:
        return await run_check(next(env.config.checks()), env)
    finally:
        await env.aclose()


async def test_upload_acknowledged_in_full_is_ok_with_segment_counts(
    sinks: dict[str, int],
) -> None:
    url = f"https://{NAME}:{sinks['https']}/sink"
    result = await run(env_for(url, options=", min_bytes: 256KiB, min_rate: 1Mbit"))
    assert result.verdict is Verdict.OK, result.detail
    assert result.bytes_sent == 256 * KIB
    assert result.status_code == 200
    assert result.rate is not None and result.rate > 125_000
    assert result.segments_sent is not None and result.segments_sent >= 4
    assert result.segments_received is not None and result.segments_received >= 2
    assert {"resolve", "connect", "tls", "transfer"} <= set(result.phases)
    assert "262144 of 262144 bytes acknowledged" in result.detail


async def test_any_answer_after_the_body_counts_unless_expect_status_is_given(
    sinks: dict[str, int],
) -> None:
    url = f"http://{NAME}:{sinks['http']}/sink?status=404"
    result = await run(env_for(url))
    assert result.verdict is Verdict.OK, result.detail
    assert result.status_code == 404
    result = await run(env_for(url, options=", expect_status: [200]"))
    assert result.verdict is Verdict.HTTP_STATUS, result.detail


async def test_acknowledgements_that_stop_after_progress_are_stalled(
    sinks: dict[str, int],
) -> None:
    url = f"http://{NAME}:{sinks['small']}/stop?after=16384"
    started = time.monotonic()
    result = await run(
        env_for(url, timeout="3s", options=", min_bytes: 1MiB, stall_timeout: 500ms")
    )
    elapsed = time.monotonic() - started
    assert result.verdict is Verdict.STALLED, result.detail
    # What was read plus what the closed window holds; far from the 1 MiB sent to the socket.
    assert result.bytes_sent is not None and 16 * KIB <= result.bytes_sent < 256 * KIB
    assert 0.45 < elapsed < 1.5
    assert "no acknowledgement for 0.5s" in result.detail


async def test_slowly_acknowledged_upload_cut_by_the_timeout_is_throttled(
    sinks: dict[str, int],
) -> None:
    url = f"http://{NAME}:{sinks['small']}/slow?rate=32000"
    result = await run(env_for(url, timeout="1500ms", options=", min_bytes: 1MiB, min_rate: 1Mbit"))
    assert result.verdict is Verdict.THROTTLED, result.detail
    assert result.rate is not None and 8_000 < result.rate < 80_000
    assert "timed out" in result.detail


async def test_reset_during_the_upload_is_http_reset(sinks: dict[str, int]) -> None:
    url = f"http://{NAME}:{sinks['http']}/reset?after=4096"
    result = await run(env_for(url, options=", min_bytes: 4MiB"))
    assert result.verdict is Verdict.HTTP_RESET, result.detail


async def test_no_answer_after_an_acknowledged_body_is_http_timeout(
    sinks: dict[str, int],
) -> None:
    url = f"http://{NAME}:{sinks['http']}/mute"
    result = await run(env_for(url, timeout="1s", options=", min_bytes: 64KiB"))
    assert result.verdict is Verdict.HTTP_TIMEOUT, result.detail
    assert result.bytes_sent == 64 * KIB
    assert "no answer in time" in result.detail


async def test_upload_to_a_closed_port_is_tcp_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await run(env_for(f"http://{NAME}:{port}/sink"))
    assert result.verdict is Verdict.TCP_REFUSED, result.detail
