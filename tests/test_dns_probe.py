"""The dns prober against real DNS servers on loopback, over UDP, TCP, DoT and DoH: every dns
verdict, the judging order the README gives, the control resolver, and hostile servers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter import dnsquery
from exporter.config import load_text
from exporter.probeenv import ProbeEnv
from exporter.probes import dns as dns_probe
from exporter.probes import run_check
from exporter.result import Result
from exporter.verdicts import Verdict
from peers import certs
from peers.dnsserver import (
    DROP,
    GARBAGE,
    HUGE,
    NODATA,
    NXDOMAIN,
    REFUSED,
    SERVFAIL,
    DnsServer,
    cname,
    cut,
    records,
    slow,
    truncated_over_udp,
    wrong_id,
)
from peers.listeners import free_port

REAL = "157.240.1.1"
REAL6 = "2a03:2880:f003::1"
BLOCKPAGE = "10.10.34.35"  # inside the configured bogons
OTHER = "93.184.216.34"

ISP_ZONE = {
    "ok.test": records(REAL, REAL6),
    "v4only.test": records(REAL),
    "nx.test": NXDOMAIN,
    "nodata.test": NODATA,
    "servfail.test": SERVFAIL,
    "refused.test": REFUSED,
    "garbage.test": GARBAGE,
    "wrongid.test": wrong_id(records(REAL)),
    "cut.test": cut(records(REAL)),
    "drop.test": DROP,
    "huge.test": HUGE,
    "slow.test": slow(0.2, records(REAL)),
    "tc.test": truncated_over_udp(records(REAL)),
    "bogon.test": records(BLOCKPAGE),
    "shared-bogon.test": records("10.0.0.7"),
    "mismatch.test": records(OTHER),
    "partly-expected.test": records(OTHER, "8.8.8.8"),
    "www.chain.test": cname("edge.chain.test"),
    "edge.chain.test": cname("real.chain.test"),
    "real.chain.test": records(REAL),
    "order.test": SERVFAIL,
    "order-nodata.test": NODATA,
    "control-fails.test": records(REAL),
    "control-gone.test": NXDOMAIN,
    "two-answers.test": records(REAL),
}
# A second ISP resolver, to see which of two failing resolvers decides.
ISP2_ZONE = {
    "order.test": NXDOMAIN,
    "order-nodata.test": records(REAL),
    "two-answers.test": records(OTHER),
}
CONTROL_ZONE = {
    **{name: records(REAL, REAL6) for name in ISP_ZONE},
    "shared-bogon.test": records("10.0.0.7"),
    "control-fails.test": SERVFAIL,
    "control-gone.test": NXDOMAIN,
}
TRANSPORTS = ["udp", "tcp", "dot", "doh"]


@dataclasses.dataclass
class Servers:
    isp: DnsServer
    isp2: DnsServer
    control: DnsServer

    def resolvers(self) -> dict[str, str]:
        return {
            "udp": self.isp.udp_url,
            "tcp": self.isp.tcp_url,
            "dot": self.isp.tls_url,
            "doh": self.isp.https_url,
            "isp2": self.isp2.udp_url,
            "control": self.control.udp_url,
        }


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with (
        DnsServer(ISP_ZONE) as isp,
        DnsServer(ISP2_ZONE, tls=False) as isp2,
        DnsServer(CONTROL_ZONE, tls=False) as control,
    ):
        yield Servers(isp, isp2, control)


def make_env(check: str, resolvers: dict[str, str]) -> ProbeEnv:
    resolver_lines = "".join(f"\n  {name}: {url}" for name, url in resolvers.items())
    config = load_text(
        f"""
defaults: {{ca_file: {certs.ca_pem_path()}, timeout: 1s, interval: 10s}}
resolvers:{resolver_lines}
bogons: [0.0.0.0/8, 10.0.0.0/8]
services:
  svc:
    checks:
      - {check}
"""
    )
    return ProbeEnv(config)


async def run(check: str, resolvers: dict[str, str]) -> Result:
    env = make_env(check, resolvers)
    try:
        return await run_check(next(env.config.checks()), env)
    finally:
        await env.aclose()


def dns_check(target: str, resolvers: str, extra: str = "") -> str:
    return f"{{name: dns, kind: dns, target: {target}, resolvers: [{resolvers}]{extra}}}"


def by_name(result: Result) -> dict[str, tuple[Verdict, list[str], bool]]:
    return {a.resolver: (a.verdict, a.addresses, a.is_control) for a in result.resolvers}


# -- every verdict over every transport ---------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_answer_that_agrees_with_the_control_is_ok(servers: Servers, transport: str) -> None:
    result = await run(dns_check("ok.test", transport), servers.resolvers())
    assert result.verdict is Verdict.OK, result.detail
    assert result.addresses == [REAL]
    assert by_name(result) == {
        transport: (Verdict.OK, [REAL], False),
        "control": (Verdict.OK, [REAL], True),
    }
    assert result.detail == f"{transport}: {REAL}; control: {REAL}"
    assert result.resolvers[0].rcode == "NOERROR"
    assert 0 < result.phases["resolve"] < 1


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("target", "verdict", "evidence"),
    [
        ("nx.test", Verdict.DNS_NXDOMAIN, "NXDOMAIN"),
        ("nodata.test", Verdict.DNS_NODATA, "NOERROR, no A record"),
        ("servfail.test", Verdict.DNS_ERROR, "SERVFAIL"),
        ("refused.test", Verdict.DNS_ERROR, "REFUSED"),
        ("garbage.test", Verdict.DNS_ERROR, "malformed reply"),
        ("cut.test", Verdict.DNS_ERROR, "malformed reply"),
        ("bogon.test", Verdict.DNS_BOGON, f"{BLOCKPAGE} (dns_bogon)"),
        ("mismatch.test", Verdict.DNS_MISMATCH, f"{OTHER} (dns_mismatch)"),
    ],
)
async def test_each_failure_gives_its_dns_verdict(
    servers: Servers, transport: str, target: str, verdict: Verdict, evidence: str
) -> None:
    result = await run(dns_check(target, transport), servers.resolvers())
    assert result.verdict is verdict, result.detail
    assert result.detail.startswith(f"{transport}: {evidence}")
    assert result.resolvers[1].verdict is Verdict.OK  # the control saw the real answer


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_reply_is_dns_timeout_within_the_check_timeout(
    servers: Servers, transport: str
) -> None:
    result = await run(dns_check("drop.test", transport, ", timeout: 500ms"), servers.resolvers())
    assert result.verdict is Verdict.DNS_TIMEOUT, result.detail
    assert result.detail.startswith(f"{transport}: timeout")
    assert 0.5 <= result.duration < 0.7


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unreachable_resolver_is_dns_error(servers: Servers, transport: str) -> None:
    udp_port, tcp_port = free_port(kind=socket.SOCK_DGRAM), free_port()
    scheme = {"udp": "udp", "tcp": "tcp", "dot": "tls", "doh": "https"}[transport]
    port = udp_port if scheme == "udp" else tcp_port
    resolvers = {**servers.resolvers(), transport: f"{scheme}://127.0.0.1:{port}"}
    result = await run(dns_check("ok.test", transport), resolvers)
    assert result.verdict is Verdict.DNS_ERROR, result.detail
    assert "unreachable" in result.detail
    assert result.duration < 0.5


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cname_chain_is_followed_to_the_addresses(servers: Servers, transport: str) -> None:
    result = await run(dns_check("www.chain.test", transport), servers.resolvers())
    assert result.verdict is Verdict.OK, result.detail
    assert result.addresses == [REAL]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_aaaa_record_is_asked_when_configured(servers: Servers, transport: str) -> None:
    result = await run(dns_check("ok.test", transport, ", record: AAAA"), servers.resolvers())
    assert result.verdict is Verdict.OK, result.detail
    assert result.addresses == [REAL6]
    result = await run(dns_check("v4only.test", transport, ", record: AAAA"), servers.resolvers())
    assert result.verdict is Verdict.DNS_NODATA, result.detail


async def test_slow_reply_inside_the_timeout_is_ok(servers: Servers) -> None:
    result = await run(dns_check("slow.test", "udp"), servers.resolvers())
    assert result.verdict is Verdict.OK, result.detail
    assert result.phases["resolve"] >= 0.2


async def test_truncated_udp_reply_is_retried_over_tcp(servers: Servers) -> None:
    before = len([q for q in servers.isp.queried("tc.test") if q.transport == "tcp"])
    result = await run(dns_check("tc.test", "udp"), servers.resolvers())
    assert result.verdict is Verdict.OK, result.detail
    assert result.addresses == [REAL]
    after = len([q for q in servers.isp.queried("tc.test") if q.transport == "tcp"])
    assert after == before + 1


# -- the judging rules --------------------------------------------------------------------------


async def test_bogon_that_the_control_also_returned_is_ok(servers: Servers) -> None:
    result = await run(dns_check("shared-bogon.test", "udp"), servers.resolvers())
    assert result.verdict is Verdict.OK, result.detail


async def test_bogon_is_dns_bogon_even_without_a_control(servers: Servers) -> None:
    result = await run(dns_check("bogon.test", "udp", ", control: none"), servers.resolvers())
    assert result.verdict is Verdict.DNS_BOGON, result.detail
    assert [a.resolver for a in result.resolvers] == ["udp"]


async def test_different_answer_inside_expect_cidrs_is_ok(servers: Servers) -> None:
    check = dns_check("mismatch.test", "udp", ", expect_cidrs: [93.184.0.0/16]")
    result = await run(check, servers.resolvers())
    assert result.verdict is Verdict.OK, result.detail


async def test_different_answer_partly_outside_expect_cidrs_is_mismatch(
    servers: Servers,
) -> None:
    check = dns_check("partly-expected.test", "udp", ", expect_cidrs: [93.184.0.0/16]")
    result = await run(check, servers.resolvers())
    assert result.verdict is Verdict.DNS_MISMATCH, result.detail


async def test_without_control_a_different_answer_is_not_compared(servers: Servers) -> None:
    result = await run(dns_check("mismatch.test", "udp", ", control: none"), servers.resolvers())
    assert result.verdict is Verdict.OK, result.detail


async def test_control_is_queried_and_reported_last_when_not_listed(servers: Servers) -> None:
    before = len(servers.control.queried("ok.test"))
    result = await run(dns_check("ok.test", "udp, tcp"), servers.resolvers())
    assert len(servers.control.queried("ok.test")) == before + 1
    assert [(a.resolver, a.is_control) for a in result.resolvers] == [
        ("udp", False),
        ("tcp", False),
        ("control", True),
    ]


async def test_failing_control_does_not_fail_the_check(servers: Servers) -> None:
    result = await run(dns_check("control-fails.test", "udp"), servers.resolvers())
    assert result.verdict is Verdict.OK, result.detail
    assert by_name(result)["control"] == (Verdict.DNS_ERROR, [], True)
    assert result.detail == f"udp: {REAL}; control: SERVFAIL"


async def test_listed_control_is_judged_but_does_not_decide(servers: Servers) -> None:
    result = await run(dns_check("control-fails.test", "control, udp"), servers.resolvers())
    assert result.verdict is Verdict.OK, result.detail
    assert [a.resolver for a in result.resolvers] == ["control", "udp"]


async def test_sole_control_resolver_gives_its_own_verdict(servers: Servers) -> None:
    result = await run(dns_check("control-gone.test", "control"), servers.resolvers())
    assert result.verdict is Verdict.DNS_NXDOMAIN, result.detail
    assert [(a.resolver, a.is_control) for a in result.resolvers] == [("control", True)]


async def test_first_failing_resolver_in_listed_order_decides(servers: Servers) -> None:
    result = await run(dns_check("order.test", "isp2, udp"), servers.resolvers())
    assert result.verdict is Verdict.DNS_NXDOMAIN, result.detail
    result = await run(dns_check("order.test", "udp, isp2"), servers.resolvers())
    assert result.verdict is Verdict.DNS_ERROR, result.detail


async def test_failing_resolver_after_an_ok_one_decides_with_its_addresses(
    servers: Servers,
) -> None:
    result = await run(dns_check("order-nodata.test", "isp2, udp"), servers.resolvers())
    assert result.verdict is Verdict.DNS_NODATA, result.detail
    assert result.addresses == []
    assert by_name(result)["isp2"] == (Verdict.OK, [REAL], False)


async def test_all_ok_reports_the_addresses_of_the_first_listed_resolver(
    servers: Servers,
) -> None:
    check = dns_check("two-answers.test", "isp2, udp", ", control: none")
    result = await run(check, servers.resolvers())
    assert result.verdict is Verdict.OK, result.detail
    assert result.addresses == [OTHER]


# -- hostile and broken servers, certificates, transports ---------------------------------------


@pytest.fixture(scope="module")
def bad_cert_servers() -> Iterator[dict[str, DnsServer]]:
    issuers = {
        "unknown CA": certs.issue_unknown_ca,
        "expired": certs.issue_expired,
        "wrong name": certs.issue_wrong_name,
    }
    with contextlib.ExitStack() as stack:
        yield {
            what: stack.enter_context(
                DnsServer({"ok.test": records(REAL)}, cert=issue("127.0.0.1"))
            )
            for what, issue in issuers.items()
        }


@pytest.mark.parametrize("transport", ["dot", "doh"])
@pytest.mark.parametrize("problem", ["unknown CA", "expired", "wrong name"])
async def test_resolver_certificate_that_does_not_verify_is_dns_error(
    servers: Servers, bad_cert_servers: dict[str, DnsServer], transport: str, problem: str
) -> None:
    server = bad_cert_servers[problem]
    url = server.tls_url if transport == "dot" else server.https_url
    result = await run(dns_check("ok.test", transport), {**servers.resolvers(), transport: url})
    assert result.verdict is Verdict.DNS_ERROR, result.detail
    assert "certificate" in result.detail.lower()


async def test_doh_endless_body_is_cut_off_as_malformed(servers: Servers) -> None:
    result = await run(dns_check("huge.test", "doh"), servers.resolvers())
    assert result.verdict is Verdict.DNS_ERROR, result.detail
    assert "longer than 65536 bytes" in result.detail
    assert result.duration < 0.5


async def test_doh_http_error_status_is_dns_error(servers: Servers) -> None:
    url = servers.isp.https_url.replace("/dns-query", "/elsewhere")
    result = await run(dns_check("ok.test", "doh"), {**servers.resolvers(), "doh": url})
    assert result.verdict is Verdict.DNS_ERROR, result.detail
    assert "HTTP status 404" in result.detail


@pytest.mark.parametrize("transport", ["tcp", "dot", "doh"])
async def test_every_run_opens_a_new_connection(servers: Servers, transport: str) -> None:
    kind = {"tcp": "tcp", "dot": "tls", "doh": "https"}[transport]
    env = make_env(dns_check("ok.test", transport, ", control: none"), servers.resolvers())
    try:
        before = servers.isp.connections[kind]
        for _ in range(3):
            assert (await run_check(next(env.config.checks()), env)).ok
        assert servers.isp.connections[kind] == before + 3
    finally:
        await env.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cancelling_a_probe_propagates(servers: Servers, transport: str) -> None:
    env = make_env(dns_check("drop.test", transport), servers.resolvers())
    try:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(dns_probe.probe(next(env.config.checks()), env, loop.time() + 5))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await env.aclose()


# -- the system resolver ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def port53_server() -> Iterator[DnsServer]:
    """A server on port 53 of a loopback address, where resolv.conf can point (root only)."""
    zone = {"ok.test": records(REAL), "dot.test": records("127.53.0.1")}
    server = DnsServer(zone, host="127.53.0.1", port=53, cert=certs.issue("dot.test"))
    try:
        server.start()
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EADDRINUSE):
            pytest.skip(f"cannot serve DNS on 127.53.0.1:53: {exc}")
        raise
    yield server
    server.stop()


@pytest.fixture
def resolv_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "resolv.conf"
    # The first nameserver has nothing on port 53: the second must be tried.
    path.write_text("nameserver 127.53.0.2\nnameserver 127.53.0.1\n")
    monkeypatch.setattr(dnsquery, "RESOLV_CONF", str(path))
    return path


async def test_system_resolver_tries_the_nameservers_of_resolv_conf_in_order(
    servers: Servers, port53_server: DnsServer, resolv_conf: Path
) -> None:
    result = await run(dns_check("ok.test", "system", ", control: none"), servers.resolvers())
    assert result.verdict is Verdict.OK, result.detail
    assert result.addresses == [REAL]


@pytest.fixture
def empty_resolv_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "resolv.conf"
    path.write_text("# nothing here\n")
    monkeypatch.setattr(dnsquery, "RESOLV_CONF", str(path))
    return path


async def test_system_resolver_without_nameservers_is_dns_error(
    servers: Servers, empty_resolv_conf: Path
) -> None:
    result = await run(dns_check("ok.test", "system", ", control: none"), servers.resolvers())
    assert result.verdict is Verdict.DNS_ERROR, result.detail
    assert "no nameservers" in result.detail


async def test_dot_resolver_given_by_name_is_found_and_verified_for_that_name(
    servers: Servers, port53_server: DnsServer, resolv_conf: Path
) -> None:
    resolvers = {**servers.resolvers(), "dot": f"tls://dot.test:{port53_server.tls_port}"}
    result = await run(dns_check("ok.test", "dot", ", control: none"), resolvers)
    assert result.verdict is Verdict.OK, result.detail
    assert result.addresses == [REAL]
