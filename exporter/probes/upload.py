"""The upload side of the transfer kind (`direction: upload`): POST `min_bytes` of random bytes
on one fresh connection and watch what the peer ACKNOWLEDGES (TCP_INFO tcpi_bytes_acked),
since the 2025 "16 KB"/"25 packets" cut-off freezes uploads to foreign hosting as well as
downloads. What we hand to the socket says nothing: the kernel buffers it whether or not it
ever arrives. `stalled` when the acknowledged bytes stop growing for `stall_timeout` after
progress, `throttled` below `min_rate`; after the body any response counts unless
`expect_status` is given (README, "transfer")."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import urllib.parse

from exporter import classify, tcpinfo
from exporter.config.model import Check, TransferOptions
from exporter.errors import (
    HttpFailure,
    HttpTimeout,
    PeerClosed,
    ProbeFailure,
    Stalled,
    Throttled,
    UnexpectedStatus,
)
from exporter.httptransport import USER_AGENT
from exporter.netconnect import open_tcp, resolve, tls_handshake
from exporter.probeenv import ProbeEnv
from exporter.redirects import status_expected
from exporter.result import PHASE_FIRST_BYTE, PHASE_TRANSFER, Phases, Result
from exporter.stream import Stream, open_stream
from exporter.verdicts import Verdict

# How often the acknowledgements are looked at: a 5 s stall_timeout is judged to within
# 1 %, and 200 polls over a 10 s run cost well under a millisecond of CPU each.
POLL_INTERVAL = 0.05
# Bytes handed to the transport at a time, and the most it may hold unsent: enough to keep
# a fast link busy for a poll interval (2 MiB in 50 ms is 320 Mbit/s), never the whole body.
WRITE_CHUNK = 16 * 1024
WRITE_AHEAD = 2 * 1024 * 1024
# One block of random bytes, sent over and over: random so that no compressing middlebox can
# shrink it, reused so that a 10 MiB upload does not cost 10 MiB of os.urandom.
_RANDOM = os.urandom(WRITE_CHUNK)
MAX_RESPONSE_HEAD = 64 * 1024
_STATUS_LINE = re.compile(rb"HTTP/\d(?:\.\d)? (\d{3})")


class _Upload:
    """The state of one upload: what went out, what the peer acknowledged, and when."""

    def __init__(self, stream: Stream, size: int, head: bytes, started: float) -> None:
        self.stream = stream
        # A socket of our own on the connection: asyncio closes its socket as soon as the
        # peer answers and hangs up, and the acknowledgements must stay readable after that.
        raw = stream.get_extra_info("socket")
        self.sock = socket.socket(fileno=os.dup(raw.fileno())) if raw is not None else None
        self.size = size
        self.head = head
        self.sent_at = started
        self.last_progress = started
        self.written = 0  # body bytes handed to the transport
        self.acked = 0  # body bytes the peer acknowledged
        self.baseline = 0
        self.info: tcpinfo.TcpInfo | None = None

    def sample(self) -> bool:
        """Read TCP_INFO; True when the peer acknowledged more than before."""
        info = tcpinfo.read(self.sock)
        if info is None:
            return False
        self.info = info
        # The request head (and, with TLS, some 22 bytes of framing per 16 KiB record) is
        # acknowledged too; the body's share is what lies beyond the head.
        acked = min(max(info.bytes_acked - self.baseline - len(self.head), 0), self.size)
        if acked > self.acked:
            self.acked = acked
            return True
        return False

    @property
    def settled(self) -> bool:
        """Everything written has left the transport and been acknowledged."""
        transport = self.stream.transport
        pending = transport.get_write_buffer_size() if transport is not None else 0
        info = self.info
        return (
            self.written >= self.size
            and pending == 0
            and info is not None
            and info.unacked == 0
            and info.notsent == 0
        )

    def write_more(self) -> None:
        transport = self.stream.transport
        if transport is None:
            return
        while self.written < self.size and transport.get_write_buffer_size() < WRITE_AHEAD:
            piece = _RANDOM[: min(WRITE_CHUNK, self.size - self.written)]
            self.stream.write(piece)
            self.written += len(piece)

    @property
    def rate(self) -> float:
        elapsed = self.last_progress - self.sent_at
        return self.acked / elapsed if elapsed > 0 else 0.0


async def probe(check: Check, env: ProbeEnv, deadline: float) -> Result:
    options = check.options
    assert isinstance(options, TransferOptions)
    phases = Phases()
    result = Result(Verdict.OK, phases=phases.durations, final_url=check.target)
    url = urllib.parse.urlsplit(check.target)
    https = url.scheme == "https"
    try:
        addresses = await resolve(check, env, deadline, phases)
        result.addresses = list(addresses)
        connection = await open_tcp(addresses, check.port, deadline, phases)
        result.address = connection.address
        if https:
            # The shared context (no ALPN offered: the server then speaks HTTP/1.1).
            context = env.ssl_context(options.verify)
            stream = await tls_handshake(connection.sock, context, check.host, deadline, phases)
            result.cert_expiry = stream.cert_expiry()
        else:
            stream = await open_stream(connection.sock)
        try:
            await _upload(check, options, stream, url, deadline, phases, result)
        finally:
            stream.close()
    except ProbeFailure as failure:
        result.verdict, result.detail = classify.verdict(failure), failure.detail
    return result


async def _upload(
    check: Check,
    options: TransferOptions,
    stream: Stream,
    url: urllib.parse.SplitResult,
    deadline: float,
    phases: Phases,
    result: Result,
) -> None:
    """Push the body, then judge; raises the failure it amounts to, if any."""
    loop = asyncio.get_running_loop()
    size = options.min_bytes
    upload = _Upload(stream, size, _head(check, url, size), loop.time())
    try:
        before = tcpinfo.read(upload.sock)
        upload.baseline = before.bytes_acked if before is not None else 0
        stream.mark()
        try:
            stream.write(upload.head)
            ending = await _push(upload, options, deadline)
        except OSError as exc:
            ending = f"reset: {type(exc).__name__}: {exc.strerror or exc}"
        upload.sample()
    finally:
        if upload.sock is not None:
            upload.sock.close()
    _evidence(result, upload)
    phases.add(PHASE_TRANSFER, upload.last_progress - upload.sent_at)
    await _judge(check, options, upload, ending, deadline, phases, result)


async def _judge(
    check: Check,
    options: TransferOptions,
    upload: _Upload,
    ending: str,
    deadline: float,
    phases: Phases,
    result: Result,
) -> None:
    """What the push amounts to; after a whole body, the answer too. Raises the failure."""
    loop = asyncio.get_running_loop()
    stream, size = upload.stream, upload.size
    measured = (
        f"{upload.acked} of {size} bytes acknowledged in "
        f"{upload.last_progress - upload.sent_at:.2f}s ({upload.rate * 8 / 1000:.0f} kbit/s)"
    )
    segments = f"{result.segments_sent} segments out, {result.segments_received} in"
    min_rate = options.min_rate
    slow = min_rate is not None and upload.rate < min_rate
    limit = f"below min_rate {min_rate * 8 / 1000:.0f} kbit/s" if min_rate is not None else ""
    target = check.target
    if ending == "stalled":
        raise Stalled(
            f"{target}: no acknowledgement for {options.stall_timeout:g}s after {measured}; "
            f"{segments}"
        )
    if ending == "timeout":
        if slow:
            raise Throttled(f"{target}: timed out at {measured}, {limit}")
        if upload.acked == 0:
            raise HttpTimeout(f"{target}: nothing acknowledged; {segments}")
        raise HttpTimeout(f"{target}: timed out at {measured}")
    if ending.startswith("reset"):
        raise PeerClosed(f"{target}: {ending} after {measured}")
    if ending == "answered early":
        # Counting an answer that came before the body as success is how browser-based
        # checkers miss the freeze (dpi-checkers#56).
        try:
            answer = f"answered {await _response_status(stream, deadline)}"
        except HttpFailure:
            answer = "closed"
        raise PeerClosed(f"{target}: {answer} after only {measured}; {segments}")
    if slow:
        raise Throttled(f"{target}: {measured}, {limit}")
    # The whole body is acknowledged: now the answer.
    answer_started = loop.time()
    try:
        status = await _response_status(stream, deadline)
    except HttpFailure as failure:
        raise failure.restated(f"{target}: {measured}, then {failure.detail}") from failure
    finally:
        phases.add(PHASE_FIRST_BYTE, loop.time() - answer_started)
    result.status_code = status
    if not status_expected(status, options.expect_status):
        raise UnexpectedStatus(f"status {status} from {target}")
    result.detail = f"{target}: {measured}, answered {status}"


async def _push(upload: _Upload, options: TransferOptions, deadline: float) -> str:
    """Write the body and wait until all of it is acknowledged: "done", "stalled" or
    "timeout". Raises OSError when the connection fails under it."""
    loop = asyncio.get_running_loop()
    while True:
        upload.write_more()
        if upload.sample():
            upload.last_progress = loop.time()
        if upload.acked >= upload.size and (upload.settled or upload.stream.ended):
            # (A peer that answers at once may hang up before our last ACK is counted.)
            return "done"
        if upload.stream.ended:
            # The peer answered (or hung up) before it had the whole body.
            return "answered early"
        now = loop.time()
        if now >= deadline:
            return "timeout"
        if upload.acked > 0 and now - upload.last_progress >= options.stall_timeout:
            return "stalled"
        await asyncio.sleep(min(POLL_INTERVAL, max(deadline - now, 0.0)))
        error = upload.stream.pending_error()
        if error is not None:
            raise error


async def _response_status(stream: Stream, deadline: float) -> int:
    """The status code of the answer; raises the HttpFailure of what went wrong."""
    head = b""
    try:
        async with asyncio.timeout_at(deadline):
            while b"\r\n" not in head and len(head) < MAX_RESPONSE_HEAD:
                data = await stream.read(MAX_RESPONSE_HEAD)
                if not data:
                    raise PeerClosed("closed without an answer")
                head += data
    except TimeoutError as exc:
        raise HttpTimeout("no answer in time") from exc
    except OSError as exc:
        raise PeerClosed(f"{type(exc).__name__} waiting for the answer") from exc
    found = _STATUS_LINE.match(head)
    if found is None:
        raise HttpFailure(f"not an HTTP answer: {head[:40]!r}")
    return int(found[1])


def _head(check: Check, url: urllib.parse.SplitResult, size: int) -> bytes:
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    default_port = 443 if url.scheme == "https" else 80
    host = check.host if check.port == default_port else f"{check.host}:{check.port}"
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")


def _evidence(result: Result, upload: _Upload) -> None:
    result.bytes_sent = upload.acked
    result.rate = upload.rate
    if upload.info is not None:
        result.segments_sent = upload.info.segments_out
        result.segments_received = upload.info.segments_in
