"""The http prober (and the exchange API under it) against real HTTP and HTTPS servers on
loopback: blockpages in bodies, Locations and URLs, redirect chains, bad statuses, endless,
slow and cut-off bodies, broken TLS underneath, a DNS server, SOCKS5 and CONNECT proxies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from exporter.httptransport import ExchangeFailure, http_request
from exporter.probeenv import ProbeEnv
from exporter.probes import run_check
from exporter.verdicts import Verdict
from peers import certs, webservers
from peers.dnsserver import NXDOMAIN, DnsServer, records
from peers.listeners import free_port
from peers.proxies import Proxy

NAME = "web.test"
# The marker as the server decodes it from a query, while the URL itself does not match.
HIDDEN_MARKER = webservers.BLOCKPAGE_MARKER.replace(".", "%2E")


class Servers:
    def __init__(self, stack: ExitStack) -> None:
        def serve(handler: webservers.Handler) -> int:
            return stack.enter_context(webservers.serve(handler))

        def https(cert_and_key: tuple[str, str]) -> int:
            return serve(webservers.http_handler(certs.server_context(cert_and_key)))

        counting, self.connections = webservers.counted(webservers.http_handler())
        self.http = serve(counting)
        self.https = https(certs.issue(NAME, "127.0.0.1"))
        self.expired = https(certs.issue_expired(NAME))
        self.reset_hello = serve(webservers.reset_on_hello)
        self.socks_proxy = Proxy({NAME: "127.0.0.1"})
        self.socks = serve(self.socks_proxy.socks5)
        self.connect_proxy = serve(Proxy().http)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http}{path}"

    def secure(self, path: str) -> str:
        return f"https://{NAME}:{self.https}{path}"


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with ExitStack() as stack:
        yield Servers(stack)


async def probe(target: str, **options: Any) -> Any:
    config = {key: options.pop(key) for key in ("timeout", "resolvers") if key in options}
    # NAME is reached at 127.0.0.1 through `address:` unless a resolver is given.
    if "resolver" not in options and f"//{NAME}:" in target:
        options.setdefault("address", ["127.0.0.1"])
    return await webservers.probe({"kind": "http", "target": target, **options}, **config)


# -- success -------------------------------------------------------------------------------


async def test_plain_http_is_ok_with_every_phase(servers: Servers) -> None:
    result = await probe(servers.url("/ok"))
    assert result.verdict is Verdict.OK, result.detail
    assert result.status_code == 200
    assert result.final_url == servers.url("/ok")
    assert result.address == "127.0.0.1"
    assert set(result.phases) == {"resolve", "connect", "first_byte", "transfer"}
    assert result.cert_expiry is None


async def test_https_to_a_chosen_address_keeps_sni_and_host_of_the_name(
    servers: Servers,
) -> None:
    result = await probe(servers.secure("/ok"))
    assert result.verdict is Verdict.OK, result.detail
    assert set(result.phases) == {"resolve", "connect", "tls", "first_byte", "transfer"}
    assert result.cert_expiry is not None and result.cert_expiry > time.time()


async def test_request_says_connection_close_and_host_of_the_name(servers: Servers) -> None:
    config = webservers.config(
        [{"name": "c", "kind": "http", "target": servers.secure("/"), "address": ["127.0.0.1"]}]
    )
    check = next(config.checks())
    env = ProbeEnv(config)
    deadline = asyncio.get_running_loop().time() + 3
    try:
        async with http_request(check, env, deadline, servers.secure("/echo")) as exchange:
            head = (await exchange.read(65536)).decode().lower()
    finally:
        await env.aclose()
    assert f"host: {NAME}:{servers.https}\r\n" in head
    assert "connection: close\r\n" in head
    assert "accept-encoding: identity\r\n" in head


async def test_every_run_opens_a_fresh_connection(servers: Servers) -> None:
    before = servers.connections[0]
    config = webservers.config([{"name": "c", "kind": "http", "target": servers.url("/ok")}])
    check = next(config.checks())
    env = ProbeEnv(config)
    try:
        for _ in range(3):
            deadline = asyncio.get_running_loop().time() + 3
            async with http_request(check, env, deadline, servers.url("/ok")) as exchange:
                await exchange.read(100)
    finally:
        await env.aclose()
    assert servers.connections[0] - before == 3


async def test_head_and_post_are_sent_as_configured(servers: Servers) -> None:
    for method in ("HEAD", "POST"):
        result = await probe(servers.url("/ok"), method=method)
        assert result.verdict is Verdict.OK, (method, result.detail)


async def test_name_resolved_through_the_checks_resolver(servers: Servers) -> None:
    with DnsServer({NAME: records("127.0.0.1")}, tls=False) as dns:
        result = await probe(servers.secure("/ok"), resolver="lab", resolvers={"lab": dns.udp_url})
    assert result.verdict is Verdict.OK, result.detail
    assert result.address == "127.0.0.1"


async def test_concurrent_probes_share_one_transport_without_mixing_up(servers: Servers) -> None:
    paths = ["/ok", "/status/503", "/blockpage", "/reset-mid-body", "/chain/2"] * 4
    config = webservers.config(
        [{"name": f"c{i}", "kind": "http", "target": servers.url(p)} for i, p in enumerate(paths)]
    )
    env = ProbeEnv(config)
    try:
        results = await asyncio.gather(*(run_check(check, env) for check in config.checks()))
        assert len(env._shared) == 1  # one transport for the one proxy setting
        assert not env._clients  # and no httpx client on the probe path
    finally:
        await env.aclose()
    expected = [Verdict.OK, Verdict.HTTP_STATUS, Verdict.HTTP_BLOCKPAGE, Verdict.HTTP_RESET]
    assert [r.verdict for r in results] == [*expected, Verdict.OK] * 4


# -- blockpages ----------------------------------------------------------------------------


async def test_blockpage_body_is_http_blockpage(servers: Servers) -> None:
    result = await probe(servers.url("/blockpage"))
    assert result.verdict is Verdict.HTTP_BLOCKPAGE
    assert "body" in result.detail and result.status_code == 200


async def test_compressed_blockpage_body_is_still_found(servers: Servers) -> None:
    result = await probe(servers.url("/gzip-blockpage"))
    assert result.verdict is Verdict.HTTP_BLOCKPAGE


async def test_redirect_to_a_blockpage_ends_the_chain_there(servers: Servers) -> None:
    result = await probe(servers.url("/redirect?to=/blockpage"))
    assert result.verdict is Verdict.HTTP_BLOCKPAGE
    assert result.final_url == servers.url("/blockpage")


async def test_location_header_matching_a_pattern_is_http_blockpage(servers: Servers) -> None:
    # The Location alone decides: the (unresolvable) blockpage host is never contacted.
    location = f"http://{HIDDEN_MARKER}/?site=web.test"
    result = await probe(servers.url(f"/redirect?to={location}"))
    assert result.verdict is Verdict.HTTP_BLOCKPAGE
    assert "Location" in result.detail and result.status_code == 302


async def test_blockpage_is_matched_before_the_status(servers: Servers) -> None:
    result = await probe(servers.url("/blockpage?status=451"))
    assert result.verdict is Verdict.HTTP_BLOCKPAGE
    assert result.status_code == 451


async def test_url_matching_a_pattern_is_http_blockpage(servers: Servers) -> None:
    result = await probe(servers.url(f"/ok?{webservers.BLOCKPAGE_MARKER}"))
    assert result.verdict is Verdict.HTTP_BLOCKPAGE
    assert "URL" in result.detail


# -- redirects -----------------------------------------------------------------------------


async def test_redirect_chain_is_followed_to_the_end(servers: Servers) -> None:
    result = await probe(servers.url("/chain/10"))
    assert result.verdict is Verdict.OK, result.detail
    assert result.final_url == servers.url("/chain/0")


async def test_more_than_ten_redirects_is_http_error(servers: Servers) -> None:
    result = await probe(servers.url("/chain/11"))
    assert result.verdict is Verdict.HTTP_ERROR
    assert "more than 10 redirects" in result.detail


async def test_redirect_to_another_scheme_is_http_error(servers: Servers) -> None:
    result = await probe(servers.url("/redirect?to=ftp://files.test/x"))
    assert result.verdict is Verdict.HTTP_ERROR
    assert "'ftp'" in result.detail


@pytest.mark.parametrize("location", ["http://a..b/", "http://web.test:99999/"])
async def test_redirect_to_an_invalid_host_or_port_is_http_error(
    servers: Servers, location: str
) -> None:
    result = await probe(servers.url(f"/redirect?to={location}"))
    assert result.verdict is Verdict.HTTP_ERROR
    assert "invalid host or port" in result.detail


async def test_redirect_from_http_to_https_follows_and_reports_the_certificate(
    servers: Servers,
) -> None:
    result = await probe(
        servers.url(f"/redirect?to=https://127.0.0.1:{servers.https}/ok&status=301")
    )
    assert result.verdict is Verdict.OK, result.detail
    assert result.final_url == f"https://127.0.0.1:{servers.https}/ok"
    assert result.cert_expiry is not None


async def test_redirect_without_following_judges_the_redirect_itself(servers: Servers) -> None:
    result = await probe(servers.url("/redirect?to=/status/500"), follow_redirects=False)
    assert result.verdict is Verdict.OK
    assert result.status_code == 302


async def test_cookies_carry_through_one_chain_but_not_into_the_next_run(
    servers: Servers,
) -> None:
    chained = await probe(servers.url("/cookie-set"))
    assert chained.verdict is Verdict.OK, chained.detail
    again = await probe(servers.url("/cookie-check"))
    assert again.verdict is Verdict.HTTP_STATUS and again.status_code == 403


async def test_redirect_to_a_name_that_does_not_resolve_is_dns_nxdomain(
    servers: Servers,
) -> None:
    with DnsServer({"gone.test": NXDOMAIN}, tls=False) as dns:
        result = await probe(
            servers.url("/redirect?to=http://gone.test/"),
            resolver="lab",
            resolvers={"lab": dns.udp_url},
        )
    assert result.verdict is Verdict.DNS_NXDOMAIN, result.detail


# -- statuses and bodies -------------------------------------------------------------------


async def test_server_error_is_http_status(servers: Servers) -> None:
    result = await probe(servers.url("/status/503"))
    assert result.verdict is Verdict.HTTP_STATUS
    assert result.status_code == 503


async def test_expect_status_accepts_what_it_lists(servers: Servers) -> None:
    result = await probe(servers.url("/status/503"), expect_status=[503])
    assert result.verdict is Verdict.OK


@pytest.mark.parametrize("path", ["/endless", "/huge"])
async def test_endless_body_is_read_only_up_to_max_body(servers: Servers, path: str) -> None:
    started = time.monotonic()
    result = await probe(servers.url(path), max_body="256KiB")
    assert result.verdict is Verdict.OK, result.detail
    assert time.monotonic() - started < 1


async def test_exchange_read_never_returns_more_than_its_limit(servers: Servers) -> None:
    config = webservers.config([{"name": "c", "kind": "http", "target": servers.url("/")}])
    env = ProbeEnv(config)
    deadline = asyncio.get_running_loop().time() + 3
    try:
        async with http_request(
            next(config.checks()), env, deadline, servers.url("/endless")
        ) as exchange:
            body = await exchange.read(100_000)
    finally:
        await env.aclose()
    assert len(body) == 100_000
    assert exchange.bytes_read < 100_000 + 64 * 1024


async def test_endless_response_head_is_http_error_not_a_memory_sink(servers: Servers) -> None:
    result = await probe(servers.url("/endless-head"))
    assert result.verdict is Verdict.HTTP_ERROR, result.detail


async def test_slow_body_is_http_timeout_within_the_timeout(servers: Servers) -> None:
    result = await probe(servers.url("/slow"), timeout="1s")
    assert result.verdict is Verdict.HTTP_TIMEOUT
    assert "body" in result.detail
    assert 0.9 < result.duration < 1.2
    assert result.phases["transfer"] > 0.8


async def test_no_response_is_http_timeout(servers: Servers) -> None:
    result = await probe(servers.secure("/stall"), timeout="1s")
    assert result.verdict is Verdict.HTTP_TIMEOUT
    assert "waiting for the response" in result.detail
    assert result.phases["first_byte"] > 0.8


@pytest.mark.parametrize("secure", [False, True])
async def test_reset_mid_body_is_http_reset(servers: Servers, secure: bool) -> None:
    url = servers.secure("/reset-mid-body") if secure else servers.url("/reset-mid-body")
    result = await probe(url)
    assert result.verdict is Verdict.HTTP_RESET, result.detail
    assert result.status_code == 200


@pytest.mark.parametrize("path", ["/close", "/reset"])
async def test_connection_ended_before_any_response_is_http_reset(
    servers: Servers, path: str
) -> None:
    result = await probe(servers.secure(path))
    assert result.verdict is Verdict.HTTP_RESET, result.detail
    assert result.status_code is None


# -- earlier layers ------------------------------------------------------------------------


async def test_closed_port_is_tcp_refused(servers: Servers) -> None:
    result = await probe(f"http://127.0.0.1:{free_port()}/")
    assert result.verdict is Verdict.TCP_REFUSED


async def test_dropped_syns_are_tcp_timeout() -> None:
    with webservers.blackhole() as address:
        result = await probe(f"http://{address}/", timeout="1s")
    assert result.verdict is Verdict.TCP_TIMEOUT, result.detail


async def test_expired_certificate_is_tls_cert_invalid(servers: Servers) -> None:
    result = await probe(f"https://{NAME}:{servers.expired}/ok")
    assert result.verdict is Verdict.TLS_CERT_INVALID, result.detail
    assert result.status_code is None


async def test_reset_client_hello_is_tls_reset(servers: Servers) -> None:
    result = await probe(f"https://{NAME}:{servers.reset_hello}/ok")
    assert result.verdict is Verdict.TLS_RESET, result.detail


# -- proxies -------------------------------------------------------------------------------


@pytest.mark.parametrize("secure", [False, True])
async def test_socks5_proxy_resolves_the_name_itself(servers: Servers, secure: bool) -> None:
    port = servers.https if secure else servers.http
    url = f"{'https' if secure else 'http'}://{NAME}:{port}/ok"
    seen = servers.socks_proxy.seen
    seen.clear()
    # No `address:` and no resolver that knows the name: only the proxy can resolve it.
    result = await webservers.probe(
        {"kind": "http", "target": url, "proxy": f"socks5://127.0.0.1:{servers.socks}"}
    )
    assert result.verdict is Verdict.OK, result.detail
    assert seen == [NAME]
    assert result.address == "127.0.0.1"  # the proxy's
    if secure:
        assert result.cert_expiry is not None and "tls" in result.phases


async def test_http_connect_proxy_tunnels_https(servers: Servers) -> None:
    result = await webservers.probe(
        {
            "kind": "http",
            "target": f"https://127.0.0.1:{servers.https}/ok",
            "proxy": f"http://127.0.0.1:{servers.connect_proxy}",
        }
    )
    assert result.verdict is Verdict.OK, result.detail
    assert result.cert_expiry is not None


async def test_proxy_that_cannot_reach_the_target_is_tcp_refused(servers: Servers) -> None:
    result = await webservers.probe(
        {
            "kind": "http",
            "target": f"http://127.0.0.1:{free_port()}/",
            "proxy": f"socks5://127.0.0.1:{servers.socks}",
        }
    )
    assert result.verdict is Verdict.TCP_REFUSED, result.detail
    assert "proxy" in result.detail


async def test_unreachable_proxy_is_tcp_refused() -> None:
    result = await webservers.probe(
        {
            "kind": "http",
            "target": "http://web.test/",
            "proxy": f"socks5://127.0.0.1:{free_port()}",
        }
    )
    assert result.verdict is Verdict.TCP_REFUSED, result.detail


async def test_exchange_failure_carries_the_evidence(servers: Servers) -> None:
    config = webservers.config([{"name": "c", "kind": "http", "target": servers.url("/")}])
    env = ProbeEnv(config)
    deadline = asyncio.get_running_loop().time() + 3
    try:
        with pytest.raises(ExchangeFailure) as caught:
            async with http_request(
                next(config.checks()), env, deadline, servers.url("/reset-mid-body")
            ) as exchange:
                await exchange.read(1 << 20)
    finally:
        await env.aclose()
    assert caught.value.verdict is Verdict.HTTP_RESET
    assert caught.value.exchange.address == "127.0.0.1"
    assert caught.value.exchange.bytes_read >= 5000


# -- hostile redirects and labels ---------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]"])
async def test_redirect_to_an_ip_literal_inside_bogons_is_a_blockpage_never_followed(
    servers: Servers, host: str
) -> None:
    before = servers.connections[0]
    target = servers.url(f"/redirect?to=http://{host}:{servers.http}/ok")
    result = await webservers.probe(
        {"kind": "http", "target": target}, bogons=("127.0.0.0/8", "10.0.0.0/8")
    )
    assert result.verdict is Verdict.HTTP_BLOCKPAGE, result.detail
    assert "bogons" in result.detail
    assert servers.connections[0] - before == 1  # the redirect itself, nothing after it


async def test_userinfo_in_a_location_is_stripped_never_sent_as_authorization(
    servers: Servers,
) -> None:
    target = servers.url(f"/redirect?to=http://user:secret@127.0.0.1:{servers.http}/no-auth")
    result = await probe(target)
    assert result.verdict is Verdict.OK, result.detail
    assert result.final_url == servers.url("/no-auth")


@pytest.mark.parametrize("charset", ["undefined", "idna", "punycode", "no-such-charset"])
async def test_a_made_up_charset_still_gets_its_blockpage_matched(
    servers: Servers, charset: str
) -> None:
    result = await probe(servers.url(f"/charset?name={charset}"))
    assert result.verdict is Verdict.HTTP_BLOCKPAGE, result.detail
