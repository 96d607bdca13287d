"""The dns prober against a spoofing or broken DNS server on loopback: a reply with the wrong
ID or the wrong question arriving before the real one over UDP is ignored, as resolvers do
(on a connection of our own it is an error), and a CNAME chain that loops or never ends is
`dns_error`, not `dns_nodata`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exporter.config import load_text
from exporter.probeenv import ProbeEnv
from exporter.probes import run_check
from exporter.result import Result
from exporter.verdicts import Verdict
from peers import certs, dnsserver
from peers.dnsserver import DECOY_ADDRESS, DnsServer, after_decoy, cname, records, wrong_id

REAL = "157.240.1.1"
LONG_CHAIN = 20  # names in a chain longer than the prober follows (16)

ZONE = {
    "spoofed-id.test": after_decoy("wrong_id", records(REAL)),
    "spoofed-question.test": after_decoy("wrong_question", records(REAL)),
    "spoofed-garbage.test": after_decoy("garbage", records(REAL)),
    "only-wrong-id.test": wrong_id(records(REAL)),
    "loop-a.test": cname("loop-b.test"),
    "loop-b.test": cname("loop-a.test"),
    "self.test": cname("self.test"),
    **{f"c{i}.long.test": cname(f"c{i + 1}.long.test") for i in range(LONG_CHAIN)},
    f"c{LONG_CHAIN}.long.test": records(REAL),
    **{f"c{i}.sixteen.test": cname(f"c{i + 1}.sixteen.test") for i in range(16)},
    "c16.sixteen.test": records(REAL),
}


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServer]:
    with pytest.MonkeyPatch.context() as patch:
        # The server follows chains as far as the test needs: a resolver would keep going.
        patch.setattr(dnsserver, "MAX_CHAIN", LONG_CHAIN + 5)
        with DnsServer(ZONE) as dns:
            yield dns


def urls(server: DnsServer) -> dict[str, str]:
    return {"udp": server.udp_url, "tcp": server.tcp_url, "dot": server.tls_url,
            "doh": server.https_url}  # fmt: skip


async def probe(server: DnsServer, target: str, transport: str, limit: str = "1s") -> Result:
    config = load_text(
        f"defaults: {{ca_file: {certs.ca_pem_path()}, timeout: {limit}, interval: 10s}}\n"
        f"resolvers: {{r: '{urls(server)[transport]}'}}\n"
        "services:\n  s:\n    checks:\n"
        f"      - {{name: d, kind: dns, target: {target}, resolvers: [r], control: none}}\n"
    )
    env = ProbeEnv(config)
    try:
        return await run_check(next(config.checks()), env)
    finally:
        await env.aclose()


@pytest.mark.parametrize(
    "target", ["spoofed-id.test", "spoofed-question.test", "spoofed-garbage.test"]
)
async def test_a_spoofed_udp_reply_is_ignored_and_the_real_one_awaited(
    server: DnsServer, target: str
) -> None:
    result = await probe(server, target, "udp")
    assert result.verdict is Verdict.OK, result.detail
    assert result.addresses == [REAL]
    assert DECOY_ADDRESS not in result.detail


async def test_only_wrong_id_replies_over_udp_run_into_the_deadline(server: DnsServer) -> None:
    result = await probe(server, "only-wrong-id.test", "udp", limit="500ms")
    assert result.verdict is Verdict.DNS_TIMEOUT, result.detail
    assert 0.5 <= result.duration < 0.8


@pytest.mark.parametrize("transport", ["tcp", "dot"])
async def test_a_wrong_id_on_our_own_connection_is_dns_error(
    server: DnsServer, transport: str
) -> None:
    result = await probe(server, "spoofed-id.test", transport)
    assert result.verdict is Verdict.DNS_ERROR, result.detail
    assert "wrong query ID" in result.detail


@pytest.mark.parametrize("transport", ["udp", "tcp", "doh"])
@pytest.mark.parametrize(
    ("target", "evidence"),
    [
        ("loop-a.test", "CNAME loop at loop-a.test"),
        ("self.test", "CNAME loop at self.test"),
        ("c0.long.test", "CNAME chain longer than 16"),
    ],
)
async def test_a_cname_chain_that_loops_or_never_ends_is_dns_error(
    server: DnsServer, transport: str, target: str, evidence: str
) -> None:
    result = await probe(server, target, transport)
    assert result.verdict is Verdict.DNS_ERROR, result.detail
    assert evidence in result.detail


async def test_a_cname_chain_of_exactly_the_bound_is_followed(server: DnsServer) -> None:
    result = await probe(server, "c0.sixteen.test", "udp")
    assert result.verdict is Verdict.OK, result.detail
    assert result.addresses == [REAL]
