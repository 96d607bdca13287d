"""The transfer prober against a real HTTP(S) server on loopback whose bodies freeze, trickle,
reset or end early, directly and through a SOCKS5 and an HTTP proxy."""

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
from peers import certs, webservers
from peers.proxies import Proxy

NAME = "transfer.test"
KIB = 1024


def _query(target: str) -> dict[str, int]:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
    return {key: int(values[0]) for key, values in query.items()}


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        line = (await reader.readline()).decode()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        target = line.split()[1]
        path, args = urllib.parse.urlsplit(target).path, _query(target)
        endless = b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\r\n"
        if path == "/big":
            writer.write(endless)
            for _ in range(4096):
                writer.write(b"\0" * (16 * KIB))
                await writer.drain()
        elif path == "/small":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10000\r\n\r\n" + b"s" * 10000)
        elif path == "/freeze":
            writer.write(endless + b"f" * args["after"])
            await writer.drain()
            await asyncio.sleep(30)
        elif path == "/slow":
            # `rate` bytes per second in 1 KiB pieces, `size` bytes in all (0: endless).
            size = args.get("size", 0)
            head = f"HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n" if size else None
            writer.write(head.encode() if head else endless)
            sent = 0
            while not size or sent < size:
                piece = min(KIB, size - sent) if size else KIB
                writer.write(b"t" * piece)
                await writer.drain()
                sent += piece
                await asyncio.sleep(piece / args["rate"])
        elif path == "/reset":
            writer.write(endless + b"r" * args["after"])
            await writer.drain()
            await asyncio.sleep(0.1)
            sock = writer.get_extra_info("socket")
            # Linger 0: close() sends RST, as a censor's injected reset would look.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        elif path == "/silent":
            await asyncio.sleep(30)
        elif path == "/redirect":
            writer.write(b"HTTP/1.1 302 Found\r\nlocation: /big\r\ncontent-length: 0\r\n\r\n")
        elif path == "/to-blockpage":
            location = b"location: http://blockpage.test/\r\n"
            writer.write(b"HTTP/1.1 302 Found\r\n" + location + b"content-length: 0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()
    except (OSError, asyncio.CancelledError):
        writer.transport.abort()


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, int]]:
    """An HTTP and an HTTPS server (certificate for transfer.test) on 127.0.0.1."""
    context = certs.server_context(certs.issue(NAME))
    plain = await asyncio.start_server(_handle, "127.0.0.1", 0)
    tls = await asyncio.start_server(_handle, "127.0.0.1", 0, ssl=context)
    try:
        yield {
            "http": plain.sockets[0].getsockname()[1],
            "https": tls.sockets[0].getsockname()[1],
        }
    finally:
        for server in (plain, tls):
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)


def env_for(url: str, timeout: str = "2s", options: str = "") -> ProbeEnv:
    config = load_text(
        f"""
defaults: {{ca_file: {certs.ca_pem_path()}}}
blockpages: ['blockpage\\.test']
services:
  media:
    checks:
      - {{name: media, kind: transfer, target: "{url}", timeout: {timeout}, interval: 10s,
          address: [127.0.0.1]{options}}}
"""
    )
    return ProbeEnv(config)


async def run(env: ProbeEnv) -> Result:
    try:
        return await run_check(next(env.config.checks()), env)
    finally:
        await env.aclose()


async def test_fast_download_reads_min_bytes_and_is_ok(servers: dict[str, int]) -> None:
    url = f"https://{NAME}:{servers['https']}/big"
    result = await run(env_for(url, options=", min_bytes: 256KiB, min_rate: 1Mbit"))
    assert result.verdict is Verdict.OK, result.detail
    assert result.bytes_received is not None and 256 * KIB <= result.bytes_received < 512 * KIB
    assert result.rate is not None and result.rate > 125_000
    assert set(result.phases) == {"resolve", "connect", "tls", "first_byte", "transfer"}
    assert "read min_bytes" in result.detail


async def test_a_body_shorter_than_min_bytes_is_read_whole(servers: dict[str, int]) -> None:
    result = await run(env_for(f"http://{NAME}:{servers['http']}/small"))
    assert result.verdict is Verdict.OK, result.detail
    assert result.bytes_received == 10000
    assert "the whole body" in result.detail


async def test_freeze_after_progress_is_stalled(servers: dict[str, int]) -> None:
    url = f"https://{NAME}:{servers['https']}/freeze?after=20000"
    started = time.monotonic()
    result = await run(env_for(url, timeout="3s", options=", stall_timeout: 500ms"))
    elapsed = time.monotonic() - started
    assert result.verdict is Verdict.STALLED, result.detail
    assert result.bytes_received == 20000
    assert 0.45 < elapsed < 1.0
    assert "no byte for 0.5s" in result.detail


async def test_trickle_cut_by_the_timeout_is_throttled(servers: dict[str, int]) -> None:
    url = f"http://{NAME}:{servers['http']}/slow?rate=16000"
    started = time.monotonic()
    result = await run(env_for(url, timeout="1500ms", options=", min_rate: 1Mbit"))
    elapsed = time.monotonic() - started
    assert result.verdict is Verdict.THROTTLED, result.detail
    assert result.rate is not None and 8000 < result.rate < 24000
    assert result.bytes_received is not None and result.bytes_received > 10 * KIB
    assert 1.45 < elapsed < 1.7
    assert "timed out" in result.detail


async def test_slow_transfer_that_completes_is_throttled(servers: dict[str, int]) -> None:
    url = f"http://{NAME}:{servers['http']}/slow?rate=20000&size=8192"
    result = await run(env_for(url, options=", min_rate: 1Mbit"))
    assert result.verdict is Verdict.THROTTLED, result.detail
    assert result.bytes_received == 8192


async def test_fast_enough_transfer_cut_by_the_timeout_is_http_timeout(
    servers: dict[str, int],
) -> None:
    url = f"http://{NAME}:{servers['http']}/slow?rate=32000"
    result = await run(env_for(url, timeout="1s", options=", min_rate: 16kbit"))
    assert result.verdict is Verdict.HTTP_TIMEOUT, result.detail
    assert result.rate is not None and result.rate > 2000


async def test_without_min_rate_a_slow_transfer_is_not_throttled(servers: dict[str, int]) -> None:
    url = f"http://{NAME}:{servers['http']}/slow?rate=20000&size=8192"
    result = await run(env_for(url))
    assert result.verdict is Verdict.OK, result.detail


async def test_reset_mid_body_is_http_reset_with_the_bytes(servers: dict[str, int]) -> None:
    url = f"http://{NAME}:{servers['http']}/reset?after=30000"
    result = await run(env_for(url))
    assert result.verdict is Verdict.HTTP_RESET, result.detail
    assert result.bytes_received is not None and 0 < result.bytes_received <= 30000


async def test_no_response_at_all_is_http_timeout_not_stalled(servers: dict[str, int]) -> None:
    url = f"http://{NAME}:{servers['http']}/silent"
    result = await run(env_for(url, timeout="1s", options=", stall_timeout: 200ms"))
    assert result.verdict is Verdict.HTTP_TIMEOUT, result.detail


async def test_unexpected_status_is_http_status(servers: dict[str, int]) -> None:
    result = await run(env_for(f"http://{NAME}:{servers['http']}/missing"))
    assert result.verdict is Verdict.HTTP_STATUS, result.detail
    assert result.status_code == 404


async def test_redirects_are_followed_and_blockpages_recognised(servers: dict[str, int]) -> None:
    followed = await run(env_for(f"http://{NAME}:{servers['http']}/redirect"))
    assert followed.verdict is Verdict.OK, followed.detail
    assert followed.final_url == f"http://{NAME}:{servers['http']}/big"
    blocked = await run(env_for(f"http://{NAME}:{servers['http']}/to-blockpage"))
    assert blocked.verdict is Verdict.HTTP_BLOCKPAGE, blocked.detail


async def test_refused_connection_is_tcp_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await run(env_for(f"http://{NAME}:{port}/big"))
    assert result.verdict is Verdict.TCP_REFUSED, result.detail


@pytest.mark.parametrize("scheme", ["socks5", "http"])
async def test_through_a_proxy_that_resolves_the_name(servers: dict[str, int], scheme: str) -> None:
    proxy = Proxy({NAME: "127.0.0.1"})
    handler = proxy.socks5 if scheme == "socks5" else proxy.http
    server = webservers.listen(handler)
    port = server.server_address[1]
    # No address list: the name is not resolvable here, only at the proxy.
    config = load_text(
        f"""
defaults: {{ca_file: {certs.ca_pem_path()}}}
services:
  media:
    checks:
      - {{name: media, kind: transfer, target: "https://{NAME}:{servers["https"]}/big",
          timeout: 3s, interval: 10s, proxy: "{scheme}://127.0.0.1:{port}"}}
"""
    )
    try:
        result = await run(ProbeEnv(config))
    finally:
        server.close()
    assert result.verdict is Verdict.OK, result.detail
    assert result.bytes_received is not None and result.bytes_received >= 64 * KIB


async def test_transfer_carries_cookies_along_its_redirects_as_http_does() -> None:
    # The two probes share one exchange chain: a redirect that sets a cookie is followed with
    # it (the old transfer loop dropped cookies and got the page's 403).
    with webservers.serve(webservers.http_handler()) as port:
        result = await webservers.probe(
            {"kind": "transfer", "target": f"http://127.0.0.1:{port}/cookie-set"}
        )
    assert result.verdict is Verdict.OK, result.detail
    assert result.final_url == f"http://127.0.0.1:{port}/cookie-check"


async def test_plain_http_through_an_http_proxy_is_forwarded_by_it(
    servers: dict[str, int],
) -> None:
    proxy = Proxy({NAME: "127.0.0.1"})
    server = webservers.listen(proxy.http)
    port = server.server_address[1]
    # No CONNECT for http://: the request goes to the proxy in absolute form.
    config = load_text(
        f"""
services:
  media:
    checks:
      - {{name: media, kind: transfer, target: "http://{NAME}:{servers["http"]}/big",
          timeout: 3s, interval: 10s, proxy: "http://127.0.0.1:{port}"}}
"""
    )
    try:
        result = await run(ProbeEnv(config))
    finally:
        server.close()
    assert result.verdict is Verdict.OK, result.detail
    assert result.address == "127.0.0.1"


async def test_download_evidence_counts_tcp_segments_each_way(servers: dict[str, int]) -> None:
    url = f"http://{NAME}:{servers['http']}/freeze?after=20000"
    result = await run(env_for(url, timeout="3s", options=", stall_timeout: 300ms"))
    assert result.verdict is Verdict.STALLED, result.detail
    # SYN, ACK, the request and at least one ACK out; SYN-ACK and the data in.
    assert result.segments_sent is not None and result.segments_sent >= 3
    assert result.segments_received is not None and result.segments_received >= 2
    assert "segments_sent" in result.to_dict()
