"""The http prober: one request per hop on a fresh connection, redirects followed by hand (at
most 10, http and https only) so that every hop's URL, Location and body can be matched
against the blockpage patterns, and the verdict names the earliest failing layer."""

from __future__ import annotations

import contextlib
import zlib

import httpx

from exporter.config import Check, HttpOptions
from exporter.httptransport import ExchangeFailure, http_request
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


async def probe(check: Check, env: ProbeEnv, deadline: float) -> Result:
    options = check.options
    assert isinstance(options, HttpOptions)
    patterns = env.config.blockpages
    phases = Phases()
    result = Result(Verdict.OK, phases=phases.durations)
    cookies = httpx.Cookies()
    url, method, hops = check.target, options.method, 0
    while True:
        result.final_url, result.status_code = url, None
        if blocked := match_blockpage(patterns, url):
            return _verdict(result, Verdict.HTTP_BLOCKPAGE, f"URL {url} matches {blocked}")
        location = None
        try:
            async with http_request(
                check, env, deadline, url, method=method, phases=phases, cookies=cookies
            ) as exchange:
                _evidence(result, exchange.address, exchange.addresses, exchange.cert_expiry)
                response = exchange.response
                assert response is not None
                result.status_code = response.status_code
                location = response.headers.get("location")
                if location is not None and (blocked := match_blockpage(patterns, location)):
                    return _verdict(
                        result,
                        Verdict.HTTP_BLOCKPAGE,
                        f"{response.status_code} Location {location} matches {blocked}",
                    )
                body = b"" if method == "HEAD" else await exchange.read(options.max_body)
        except ExchangeFailure as failure:
            done = failure.exchange
            _evidence(result, done.address, done.addresses, done.cert_expiry)
            return _verdict(result, failure.verdict, f"{url}: {failure.detail}")
        if (
            patterns
            and body
            and (blocked := match_blockpage(patterns, _text(body, response, options.max_body)))
        ):
            return _verdict(
                result,
                Verdict.HTTP_BLOCKPAGE,
                f"body of {url} ({response.status_code}) matches {blocked}",
            )
        if not (
            options.follow_redirects and location and response.status_code in REDIRECT_STATUSES
        ):
            break
        hops += 1
        try:
            target = next_url(url, location, hops)
        except RedirectRefused as refused:
            return _verdict(result, Verdict.HTTP_ERROR, str(refused))
        if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
            # What browsers do: the next request carries no body.
            method = "GET"
        url = target
    status = result.status_code
    assert status is not None
    if not status_expected(status, options.expect_status):
        return _verdict(result, Verdict.HTTP_STATUS, f"status {status} from {url}")
    return result


def _verdict(result: Result, verdict: Verdict, detail: str) -> Result:
    result.verdict, result.detail = verdict, detail
    return result


def _evidence(
    result: Result, address: str | None, addresses: list[str], cert_expiry: float | None
) -> None:
    """The last hop's connection is the evidence; a certificate seen earlier is kept when a
    later hop is plain http."""
    result.address = address
    result.addresses = list(addresses)
    if cert_expiry is not None:
        result.cert_expiry = cert_expiry


def _text(body: bytes, response: httpx.Response, limit: int) -> str:
    """The body as text for the patterns: decompressed when the server compressed it anyway
    (we asked for identity), at most `limit` bytes of it so that a small bomb stays small; in
    its declared charset, else UTF-8."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        # Not what it claims: match the bytes as sent. wbits 47: zlib or gzip framing.
        with contextlib.suppress(zlib.error):
            body = zlib.decompressobj(47).decompress(body, limit)
    charset = response.charset_encoding or "utf-8"
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")
