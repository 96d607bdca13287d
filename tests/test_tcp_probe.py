"""The tcp prober against real peers: a listening port, a closed port, an address whose SYNs
are dropped (a network namespace of the test's own), and a DNS server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exporter.verdicts import Verdict
from peers import webservers
from peers.dnsserver import NXDOMAIN, DnsServer, records
from peers.listeners import free_port


@pytest.fixture(scope="module")
def listening() -> Iterator[int]:
    with webservers.serve(webservers.hold) as port:
        yield port


@pytest.fixture(scope="module")
def blackhole() -> Iterator[str]:
    with webservers.blackhole() as address:
        yield address


async def test_open_port_is_ok_and_names_the_address(listening: int) -> None:
    result = await webservers.probe({"kind": "tcp", "target": f"127.0.0.1:{listening}"})
    assert result.verdict is Verdict.OK, result.detail
    assert result.address == "127.0.0.1"
    assert result.addresses == ["127.0.0.1"]
    assert set(result.phases) == {"resolve", "connect"}


async def test_closed_port_is_tcp_refused() -> None:
    port = free_port()
    result = await webservers.probe({"kind": "tcp", "target": f"127.0.0.1:{port}"})
    assert result.verdict is Verdict.TCP_REFUSED
    assert f"127.0.0.1:{port}" in result.detail
    assert result.address is None


async def test_dropped_syns_are_tcp_timeout_within_the_timeout(blackhole: str) -> None:
    result = await webservers.probe({"kind": "tcp", "target": f"{blackhole}:443"}, timeout="1s")
    assert result.verdict is Verdict.TCP_TIMEOUT, result.detail
    assert 0.9 < result.duration < 1.2


async def test_addresses_are_tried_in_turn_until_one_answers(listening: int) -> None:
    # Nothing listens on 127.0.0.2 (the server is bound to 127.0.0.1): refused, then on.
    result = await webservers.probe(
        {"kind": "tcp", "target": f"svc.test:{listening}", "address": ["127.0.0.2", "127.0.0.1"]}
    )
    assert result.verdict is Verdict.OK, result.detail
    assert result.addresses == ["127.0.0.2", "127.0.0.1"]
    assert result.address == "127.0.0.1"


async def test_a_silent_address_gets_only_its_share_of_the_time(
    blackhole: str, listening: int
) -> None:
    result = await webservers.probe(
        {"kind": "tcp", "target": f"svc.test:{listening}", "address": [blackhole, "127.0.0.1"]},
        timeout="1s",
    )
    assert result.verdict is Verdict.OK, result.detail
    assert result.address == "127.0.0.1"
    assert 0.45 < result.duration < 0.7  # half the timeout for the first address


async def test_when_every_address_fails_the_first_one_names_the_verdict(blackhole: str) -> None:
    port = free_port()
    result = await webservers.probe(
        {"kind": "tcp", "target": f"svc.test:{port}", "address": ["127.0.0.1", blackhole]},
        timeout="1s",
    )
    assert result.verdict is Verdict.TCP_REFUSED
    assert "127.0.0.1" in result.detail and blackhole in result.detail
    assert result.addresses == ["127.0.0.1", blackhole]


async def test_a_name_that_does_not_resolve_gives_the_dns_verdict(listening: int) -> None:
    zone = {"up.test": records("127.0.0.1"), "gone.test": NXDOMAIN}
    with DnsServer(zone, tls=False) as dns:
        resolvers = {"lab": dns.udp_url}
        gone = await webservers.probe(
            {"kind": "tcp", "target": f"gone.test:{listening}", "resolver": "lab"},
            resolvers=resolvers,
        )
        up = await webservers.probe(
            {"kind": "tcp", "target": f"up.test:{listening}", "resolver": "lab"},
            resolvers=resolvers,
        )
    assert gone.verdict is Verdict.DNS_NXDOMAIN
    assert "connect" not in gone.phases
    assert up.verdict is Verdict.OK, up.detail
    assert up.address == "127.0.0.1"
