"""The transfer prober: a sustained download on one fresh connection, to catch what a small
request cannot: the "16 KB" freeze of connections to foreign hosting (`stalled`) and
throttling (`throttled`). It reads at least `min_bytes` (or the whole body), watching for a
gap of `stall_timeout` between bytes, and measures the goodput from the request to the last
byte."""

from __future__ import annotations

import asyncio

from exporter.config import Check, TransferOptions
from exporter.httptransport import ExchangeFailure, HttpExchange, http_request
from exporter.probeenv import ProbeEnv
from exporter.redirects import (
    REDIRECT_STATUSES,
    RedirectRefused,
    match_blockpage,
    next_url,
    status_expected,
)
from exporter.result import Phases, Result
from exporter.verdicts import Verdict


class _Reading:
    """What the body read saw: bytes, when the request went out and the last byte came."""

    def __init__(self, sent_at: float) -> None:
        self.sent_at = sent_at
        self.last_at = sent_at
        self.bytes = 0

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
        await chunks.aclose()
    return reading, "done"


async def probe(check: Check, env: ProbeEnv, deadline: float) -> Result:
    options = check.options
    assert isinstance(options, TransferOptions)
    patterns = env.config.blockpages
    phases = Phases()
    result = Result(Verdict.OK, phases=phases.durations)
    url, hops = check.target, 0
    while True:
        result.final_url = url
        if blocked := match_blockpage(patterns, url):
            return _verdict(result, Verdict.HTTP_BLOCKPAGE, f"URL {url} matches {blocked}")
        location = None
        try:
            async with http_request(check, env, deadline, url, phases=phases) as exchange:
                _evidence(result, exchange)
                response = exchange.response
                assert response is not None
                status = result.status_code = response.status_code
                location = response.headers.get("location")
                if location is not None and (blocked := match_blockpage(patterns, location)):
                    return _verdict(
                        result,
                        Verdict.HTTP_BLOCKPAGE,
                        f"{status} Location {location} matches {blocked}",
                    )
                redirect = options.follow_redirects and location and status in REDIRECT_STATUSES
                if not redirect:
                    if not status_expected(status, options.expect_status):
                        return _verdict(result, Verdict.HTTP_STATUS, f"status {status} from {url}")
                    reading, ending = await _read(exchange, options, deadline)
                    return _judge(result, options, reading, ending, url)
        except ExchangeFailure as failure:
            _evidence(result, failure.exchange)
            if failure.exchange.response is not None:
                # Failed mid-body (a reset, garbage): what arrived until then is evidence.
                result.bytes_received = failure.exchange.bytes_read
            return _verdict(result, failure.verdict, f"{url}: {failure.detail}")
        hops += 1
        assert location is not None
        try:
            target = next_url(url, location, hops)
        except RedirectRefused as refused:
            return _verdict(result, Verdict.HTTP_ERROR, str(refused))
        url = target


def _judge(
    result: Result, options: TransferOptions, reading: _Reading, ending: str, url: str
) -> Result:
    result.bytes_received = reading.bytes
    result.rate = reading.rate
    seconds = reading.last_at - reading.sent_at
    measured = f"{reading.bytes} bytes in {seconds:.2f}s ({reading.rate * 8 / 1000:.0f} kbit/s)"
    min_rate = options.min_rate
    slow = min_rate is not None and reading.rate < min_rate
    limit = f"below min_rate {min_rate * 8 / 1000:.0f} kbit/s" if min_rate is not None else ""
    if ending == "stalled":
        return _verdict(
            result,
            Verdict.STALLED,
            f"{url}: no byte for {options.stall_timeout:g}s after {measured}",
        )
    if ending == "timeout":
        # Still receiving when time ran out: slow is throttling, fast is just too much.
        if slow:
            return _verdict(result, Verdict.THROTTLED, f"{url}: timed out at {measured}, {limit}")
        return _verdict(result, Verdict.HTTP_TIMEOUT, f"{url}: timed out at {measured}")
    if slow:
        return _verdict(result, Verdict.THROTTLED, f"{url}: {measured}, {limit}")
    complete = "min_bytes" if reading.bytes >= options.min_bytes else "the whole body"
    return _verdict(result, Verdict.OK, f"{url}: {measured}, read {complete}")


def _verdict(result: Result, verdict: Verdict, detail: str) -> Result:
    result.verdict, result.detail = verdict, detail
    return result


def _evidence(result: Result, exchange: HttpExchange) -> None:
    result.address = exchange.address
    result.addresses = list(exchange.addresses)
    if exchange.cert_expiry is not None:
        result.cert_expiry = exchange.cert_expiry
