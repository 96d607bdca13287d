"""The transfer prober: a sustained download on one fresh connection, to catch what a small
request cannot: the "16 KB" freeze of connections to foreign hosting (`stalled`) and
throttling (`throttled`). It reads at least `min_bytes` (or the whole body), watching for a
gap of `stall_timeout` between bytes, and measures the goodput from the request to the last
byte."""

from __future__ import annotations

import asyncio

from exporter import tcpinfo
from exporter.config.model import DIRECTION_UPLOAD, Check, TransferOptions
from exporter.errors import HttpTimeout, Stalled, Throttled
from exporter.httpchain import probe_chain
from exporter.httptransport import HttpExchange
from exporter.probeenv import ProbeEnv
from exporter.probes import upload
from exporter.result import Result

# Bytes of a redirect's body read for the blockpage patterns (the download is the final
# response's); a redirect page is small, and a larger one is not a page.
REDIRECT_BODY_LIMIT = 64 * 1024


class _Reading:
    """What the body read saw: bytes, when the request went out and the last byte came."""

    def __init__(self, sent_at: float) -> None:
        self.sent_at = sent_at
        self.last_at = sent_at
        self.bytes = 0
        self.tcp: tcpinfo.TcpInfo | None = None

    @property
    def rate(self) -> float:
        elapsed = self.last_at - self.sent_at
        return self.bytes / elapsed if elapsed > 0 else 0.0


async def _read(
    exchange: HttpExchange, options: TransferOptions, deadline: float
) -> tuple[_Reading, str]:
    """Read until min_bytes or the end of the body; the reading and how it ended: "done",
    "stalled" or "timeout". ExchangeFailure (a reset, garbage) propagates."""
    loop = asyncio.get_running_loop()
    sent_at = exchange.request_sent_at
    reading = _Reading(loop.time() if sent_at is None else sent_at)
    # The response headers are the first progress: a freeze right after them is a stall.
    reading.last_at = exchange.first_byte_at or loop.time()
    chunks = exchange.chunks()
    try:
        while reading.bytes < options.min_bytes:
            stall_at = reading.last_at + options.stall_timeout
            try:
                async with asyncio.timeout_at(min(stall_at, deadline)):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return reading, "done"
            except TimeoutError:
                return reading, "stalled" if stall_at < deadline else "timeout"
            if chunk:
                reading.bytes += len(chunk)
                reading.last_at = loop.time()
    finally:
        # Before the connection goes with the body: the kernel's counts of this connection.
        reading.tcp = tcpinfo.read(exchange.socket())
        await chunks.aclose()
    return reading, "done"


async def probe(check: Check, env: ProbeEnv, deadline: float) -> Result:
    options = check.options
    assert isinstance(options, TransferOptions)
    if options.direction == DIRECTION_UPLOAD:
        return await upload.probe(check, env, deadline)

    async def download(exchange: HttpExchange, url: str, result: Result) -> None:
        reading, ending = await _read(exchange, options, deadline)
        _judge(result, options, reading, ending, url)

    return await probe_chain(
        check, env, deadline, method="GET", body_limit=REDIRECT_BODY_LIMIT, final=download
    )


def _judge(
    result: Result, options: TransferOptions, reading: _Reading, ending: str, url: str
) -> None:
    """Record what the download measured; raise the failure it amounts to, if any."""
    result.bytes_received = reading.bytes
    result.rate = reading.rate
    if reading.tcp is not None:
        # Segments each way tell a cut after N packets from one after N bytes (through a
        # proxy: those of the connection to the proxy).
        result.segments_sent = reading.tcp.segments_out
        result.segments_received = reading.tcp.segments_in
    seconds = reading.last_at - reading.sent_at
    measured = f"{reading.bytes} bytes in {seconds:.2f}s ({reading.rate * 8 / 1000:.0f} kbit/s)"
    min_rate = options.min_rate
    slow = min_rate is not None and reading.rate < min_rate
    limit = f"below min_rate {min_rate * 8 / 1000:.0f} kbit/s" if min_rate is not None else ""
    if ending == "stalled":
        raise Stalled(f"{url}: no byte for {options.stall_timeout:g}s after {measured}")
    if ending == "timeout":
        # Still receiving when time ran out: slow is throttling, fast is just too much.
        if slow:
            raise Throttled(f"{url}: timed out at {measured}, {limit}")
        raise HttpTimeout(f"{url}: timed out at {measured}")
    if slow:
        raise Throttled(f"{url}: {measured}, {limit}")
    complete = "min_bytes" if reading.bytes >= options.min_bytes else "the whole body"
    result.detail = f"{url}: {measured}, read {complete}"
