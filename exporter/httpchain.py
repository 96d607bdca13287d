"""The HTTP exchange loop the http and transfer probes share: one request per hop on a fresh
connection, redirects followed by hand (at most 10, http and https only, 303 and a POST's
301/302 turned into GET, cookies carried along the chain), every hop's URL, Location and
body matched against the blockpage patterns, and the final status checked. A failure is
raised as the typed failure of its layer (exporter.errors); the evidence is in `result`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from exporter import classify
from exporter.config import Check, HttpOptions, StatusRanges, TransferOptions
from exporter.errors import Blockpage, ProbeFailure, UnexpectedStatus
from exporter.httptransport import ExchangeFailure, HttpExchange, http_request
from exporter.probeenv import ProbeEnv
from exporter.redirects import (
    REDIRECT_STATUSES,
    body_text,
    match_blockpage,
    next_url,
    status_expected,
)
from exporter.result import Phases, Result
from exporter.verdicts import Verdict

# What the final response is handed to instead of reading its body for the patterns (the
# transfer probe's download); it gets the exchange, the URL and the result to fill in.
FinalReader = Callable[[HttpExchange, str, Result], Awaitable[None]]


async def probe_chain(
    check: Check,
    env: ProbeEnv,
    deadline: float,
    *,
    method: str,
    body_limit: int,
    final: FinalReader | None = None,
) -> Result:
    """A probe's whole run over the chain: its Result, with the verdict of the failure that
    ended the chain, if one did (see follow_chain)."""
    options = check.options
    assert isinstance(options, HttpOptions | TransferOptions)
    phases = Phases()
    result = Result(Verdict.OK, phases=phases.durations)
    try:
        await follow_chain(
            check,
            env,
            deadline,
            result,
            phases,
            method=method,
            follow_redirects=options.follow_redirects,
            expect_status=options.expect_status,
            body_limit=body_limit,
            final=final,
        )
    except ProbeFailure as failure:
        result.verdict, result.detail = classify.verdict(failure), failure.detail
    return result


async def follow_chain(
    check: Check,
    env: ProbeEnv,
    deadline: float,
    result: Result,
    phases: Phases,
    *,
    method: str,
    follow_redirects: bool,
    expect_status: StatusRanges | None,
    body_limit: int,
    final: FinalReader | None = None,
) -> None:
    """Run the chain from the check's target; returns when it passed, raises ProbeFailure
    when it did not. With `final`, the last response's status is checked first and its body
    left to `final`; without, the body (up to `body_limit`) is matched, then the status."""
    patterns = env.config.blockpages
    cookies: httpx.Cookies | None = None  # made when a hop sets one: most chains have none
    url, hops = check.target, 0
    while True:
        result.final_url, result.status_code = url, None
        if blocked := match_blockpage(patterns, url):
            raise Blockpage(f"URL {url} matches {blocked}")
        try:
            async with http_request(
                check, env, deadline, url, method=method, phases=phases, cookies=cookies
            ) as exchange:
                _evidence(result, exchange)
                response = exchange.response
                assert response is not None
                if "set-cookie" in response.headers:
                    cookies = cookies if cookies is not None else httpx.Cookies()
                    cookies.extract_cookies(response)
                status = result.status_code = response.status_code
                location = response.headers.get("location")
                if location is not None and (blocked := match_blockpage(patterns, location)):
                    raise Blockpage(f"{status} Location {location} matches {blocked}")
                redirect = follow_redirects and location and status in REDIRECT_STATUSES
                if not redirect and final is not None:
                    if not status_expected(status, expect_status):
                        raise UnexpectedStatus(f"status {status} from {url}")
                    await final(exchange, url, result)
                    return
                body = b"" if method == "HEAD" else await exchange.read(body_limit)
        except ExchangeFailure as failed:
            done = failed.exchange
            _evidence(result, done)
            if final is not None and done.response is not None:
                # Failed mid-body (a reset, garbage): what arrived until then is evidence.
                result.bytes_received = done.bytes_read
            raise failed.failure.restated(f"{url}: {failed.detail}") from failed.failure
        if patterns and body:
            text = body_text(
                body,
                response.headers.get("content-encoding", ""),
                response.charset_encoding,
                body_limit,
            )
            if blocked := match_blockpage(patterns, text):
                raise Blockpage(f"body of {url} ({status}) matches {blocked}")
        if not redirect:
            break
        assert location is not None
        hops += 1
        target = next_url(url, location, hops, env.config.bogons)
        if status == 303 or (status in (301, 302) and method == "POST"):
            # What browsers do: the next request carries no body.
            method = "GET"
        url = target
    if not status_expected(status, expect_status):
        raise UnexpectedStatus(f"status {status} from {url}")


def _evidence(result: Result, exchange: HttpExchange) -> None:
    """The last hop's connection is the evidence; a certificate seen earlier is kept when a
    later hop is plain http."""
    result.address = exchange.address
    result.addresses = list(exchange.addresses)
    if exchange.cert_expiry is not None:
        result.cert_expiry = exchange.cert_expiry
