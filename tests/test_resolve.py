"""Target resolution for the non-dns kinds against a real DNS server on loopback: address lists
and IP literals as given, bogons never used, ip_version, and the dns verdict when nothing is
usable."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from exporter.config import Check, load_text
from exporter.probeenv import ProbeEnv
from exporter.resolve import Resolution, resolve_target
from exporter.verdicts import Verdict
from peers import certs
from peers.dnsserver import (
    DROP,
    NODATA,
    NXDOMAIN,
    SERVFAIL,
    DnsServer,
    records,
    split,
)

BLOCKPAGE = "10.10.34.35"

ZONE = {
    "dual.test": records("127.0.0.2", "::1", "127.0.0.3"),
    "mixed.test": records(BLOCKPAGE, "127.0.0.4", "fd00::1"),
    "bogon.test": records(BLOCKPAGE, "0.0.0.0"),
    "nx.test": NXDOMAIN,
    "nodata.test": NODATA,
    "servfail.test": SERVFAIL,
    "drop.test": DROP,
    "v4-aaaa-fails.test": split(records("127.0.0.5"), SERVFAIL),
    "aaaa-nx.test": split(NODATA, NXDOMAIN),
    "a-timeout.test": split(DROP, NODATA),
    "redirect.test": records("127.0.0.6"),
}


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServer]:
    with DnsServer(ZONE) as server:
        yield server


async def resolve(
    server: DnsServer,
    target: str,
    extra: str = "",
    host: str | None = None,
    resolver: str = "udp",
) -> Resolution:
    config = load_text(
        f"""
defaults: {{ca_file: {certs.ca_pem_path()}, timeout: 1s, resolver: {resolver}}}
resolvers:
  udp: {server.udp_url}
  doh: {server.https_url}
bogons: [0.0.0.0/8, 10.0.0.0/8, fc00::/7]
services:
  svc:
    checks:
      - {{name: web, kind: tcp, target: "{target}"{extra}}}
"""
    )
    env = ProbeEnv(config)
    check: Check = next(config.checks())
    try:
        return await resolve_target(check, env, asyncio.get_running_loop().time() + 0.5, host)
    finally:
        await env.aclose()


async def test_address_list_is_used_as_given_without_a_query(server: DnsServer) -> None:
    before = len(server.queried("dual.test"))
    resolution = await resolve(server, "dual.test:443", ", address: [10.1.1.1, 127.0.0.9]")
    assert resolution.addresses == ["10.1.1.1", "127.0.0.9"]
    assert resolution.verdict is Verdict.OK
    assert resolution.duration == 0
    assert len(server.queried("dual.test")) == before


async def test_address_list_does_not_apply_to_another_host(server: DnsServer) -> None:
    resolution = await resolve(
        server, "dual.test:443", ", address: [127.0.0.9]", host="redirect.test"
    )
    assert resolution.addresses == ["127.0.0.6"]


@pytest.mark.parametrize(
    ("target", "host", "expected"),
    [
        ("127.0.0.7:443", None, "127.0.0.7"),
        ("[::1]:443", None, "::1"),
        ("10.1.2.3:443", None, "10.1.2.3"),  # a literal is used as given, even a bogon
        ("dual.test:443", "[::1]", "::1"),  # e.g. a redirect to http://[::1]/
    ],
)
async def test_ip_literal_is_used_without_a_query(
    server: DnsServer, target: str, host: str | None, expected: str
) -> None:
    resolution = await resolve(server, target, host=host)
    assert (resolution.addresses, resolution.verdict) == ([expected], Verdict.OK)
    assert resolution.duration == 0


async def test_any_ip_version_gives_ipv4_addresses_first(server: DnsServer) -> None:
    resolution = await resolve(server, "dual.test:443")
    # Order inside one RRset is the server's choice; IPv4 before IPv6 is ours.
    assert sorted(resolution.addresses[:2]) == ["127.0.0.2", "127.0.0.3"]
    assert resolution.addresses[2:] == ["::1"]
    assert resolution.verdict is Verdict.OK
    assert resolution.duration > 0


@pytest.mark.parametrize(("version", "expected"), [(4, ["127.0.0.2", "127.0.0.3"]), (6, ["::1"])])
async def test_ip_version_asks_only_its_record_type(
    server: DnsServer, version: int, expected: list[str]
) -> None:
    resolution = await resolve(server, "dual.test:443", f", ip_version: {version}")
    assert sorted(resolution.addresses) == expected


async def test_bogon_addresses_are_dropped_and_noted(server: DnsServer) -> None:
    resolution = await resolve(server, "mixed.test:443")
    assert resolution.addresses == ["127.0.0.4"]
    assert resolution.verdict is Verdict.OK
    assert BLOCKPAGE in resolution.detail and "fd00::1" in resolution.detail


async def test_only_bogons_is_dns_bogon_naming_them(server: DnsServer) -> None:
    resolution = await resolve(server, "bogon.test:443")
    assert resolution.addresses == []
    assert resolution.verdict is Verdict.DNS_BOGON
    assert BLOCKPAGE in resolution.detail and "0.0.0.0" in resolution.detail


@pytest.mark.parametrize(
    ("target", "verdict"),
    [
        ("nx.test", Verdict.DNS_NXDOMAIN),
        ("nodata.test", Verdict.DNS_NODATA),
        ("servfail.test", Verdict.DNS_ERROR),
        ("drop.test", Verdict.DNS_TIMEOUT),
        ("aaaa-nx.test", Verdict.DNS_NXDOMAIN),  # NXDOMAIN from either query
        ("a-timeout.test", Verdict.DNS_TIMEOUT),  # nodata needs both queries empty
    ],
)
async def test_no_address_gives_the_dns_verdict(
    server: DnsServer, target: str, verdict: Verdict
) -> None:
    resolution = await resolve(server, f"{target}:443")
    assert (resolution.addresses, resolution.verdict) == ([], verdict), resolution.detail


async def test_usable_answer_wins_over_a_failed_query(server: DnsServer) -> None:
    resolution = await resolve(server, "v4-aaaa-fails.test:443")
    assert (resolution.addresses, resolution.verdict) == (["127.0.0.5"], Verdict.OK)
    assert "SERVFAIL" in resolution.detail


async def test_nodata_for_the_one_asked_type(server: DnsServer) -> None:
    resolution = await resolve(server, "aaaa-nx.test:443", ", ip_version: 4")
    assert resolution.verdict is Verdict.DNS_NODATA


async def test_check_resolver_is_used_doh_included(server: DnsServer) -> None:
    before = len([q for q in server.queried("dual.test") if q.transport == "https"])
    resolution = await resolve(server, "dual.test:443", resolver="doh")
    assert sorted(resolution.addresses) == ["127.0.0.2", "127.0.0.3", "::1"]
    after = len([q for q in server.queried("dual.test") if q.transport == "https"])
    assert after == before + 2
