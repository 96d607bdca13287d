"""The tls prober against real TLS servers on loopback: certificates from the tests' CA
(valid, expired, for another name, from an unknown CA), a server that resets the
ClientHello, one that never answers it, and one that resets only a given SNI."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from exporter.probeenv import ProbeEnv
from exporter.probes import run_check
from exporter.verdicts import Verdict
from peers import certs, webservers
from peers.dnsserver import DnsServer, records
from peers.listeners import free_port

NAME = "tls.test"
BLOCKED = "blocked.test"
CONTROL = "control.test"


@pytest.fixture(scope="module")
def ports() -> Iterator[dict[str, int]]:
    def tls(cert_and_key: tuple[str, str]) -> webservers.Handler:
        return webservers.tls_handler(certs.server_context(cert_and_key))

    handlers = {
        "valid": tls(certs.issue(NAME, BLOCKED)),
        "expired": tls(certs.issue_expired(NAME)),
        "wrong_name": tls(certs.issue_wrong_name(NAME)),
        "unknown_ca": tls(certs.issue_unknown_ca(NAME)),
        "reset": webservers.reset_on_hello,
        "silent": webservers.silent,
        "not_tls": webservers.not_tls,
        "sni_filter": webservers.sni_filter(
            BLOCKED, certs.server_context(certs.issue(NAME, BLOCKED))
        ),
    }
    with ExitStack() as stack:
        yield {name: stack.enter_context(webservers.serve(h)) for name, h in handlers.items()}


def tls_check(port: int, **options: object) -> dict[str, object]:
    """A tls check of NAME on `port`, reached at 127.0.0.1 through `address:`."""
    return {"kind": "tls", "target": f"{NAME}:{port}", "address": ["127.0.0.1"], **options}


async def test_valid_certificate_is_ok_and_reports_its_expiry(ports: dict[str, int]) -> None:
    result = await webservers.probe(tls_check(ports["valid"]))
    assert result.verdict is Verdict.OK, result.detail
    assert result.address == "127.0.0.1"
    assert set(result.phases) == {"resolve", "connect", "tls"}
    assert result.cert_expiry is not None and result.cert_expiry > time.time() + 86400


async def test_sni_option_replaces_the_target_name(ports: dict[str, int]) -> None:
    result = await webservers.probe(
        {"kind": "tls", "target": f"127.0.0.1:{ports['valid']}", "sni": NAME}
    )
    assert result.verdict is Verdict.OK, result.detail


async def test_fully_qualified_name_with_trailing_dot_verifies(ports: dict[str, int]) -> None:
    result = await webservers.probe(
        {"kind": "tls", "target": f"{NAME}.:{ports['valid']}", "address": ["127.0.0.1"]}
    )
    assert result.verdict is Verdict.OK, result.detail


@pytest.mark.parametrize("server", ["expired", "wrong_name", "unknown_ca"])
async def test_certificate_that_does_not_verify_is_tls_cert_invalid(
    ports: dict[str, int], server: str
) -> None:
    result = await webservers.probe(tls_check(ports[server]))
    assert result.verdict is Verdict.TLS_CERT_INVALID, result.detail
    assert "certificate verify failed" in result.detail
    assert result.cert_expiry is None


async def test_verify_false_accepts_an_untrusted_certificate(ports: dict[str, int]) -> None:
    result = await webservers.probe(tls_check(ports["unknown_ca"], verify=False))
    assert result.verdict is Verdict.OK, result.detail


async def test_reset_on_client_hello_is_tls_reset(ports: dict[str, int]) -> None:
    result = await webservers.probe(tls_check(ports["reset"]))
    assert result.verdict is Verdict.TLS_RESET, result.detail


async def test_unanswered_client_hello_is_tls_timeout(ports: dict[str, int]) -> None:
    result = await webservers.probe(tls_check(ports["silent"]), timeout="1s")
    assert result.verdict is Verdict.TLS_TIMEOUT, result.detail
    assert 0.9 < result.duration < 1.2


async def test_server_that_does_not_speak_tls_is_tls_error(ports: dict[str, int]) -> None:
    result = await webservers.probe(tls_check(ports["not_tls"]))
    assert result.verdict is Verdict.TLS_ERROR, result.detail


async def test_closed_port_is_tcp_refused_not_a_tls_verdict() -> None:
    result = await webservers.probe(tls_check(free_port()))
    assert result.verdict is Verdict.TCP_REFUSED
    assert "tls" not in result.phases


async def test_reset_of_the_real_sni_only_is_tls_sni_blocked(ports: dict[str, int]) -> None:
    result = await webservers.probe(
        tls_check(ports["sni_filter"], sni=BLOCKED, control_sni=CONTROL)
    )
    assert result.verdict is Verdict.TLS_SNI_BLOCKED, result.detail
    assert CONTROL in result.detail


async def test_sni_filter_without_control_sni_is_plain_tls_reset(ports: dict[str, int]) -> None:
    result = await webservers.probe(tls_check(ports["sni_filter"], sni=BLOCKED))
    assert result.verdict is Verdict.TLS_RESET, result.detail


async def test_sni_filter_passes_other_names(ports: dict[str, int]) -> None:
    result = await webservers.probe(tls_check(ports["sni_filter"], control_sni=CONTROL))
    assert result.verdict is Verdict.OK, result.detail


async def test_control_sni_failing_too_keeps_the_first_verdict(ports: dict[str, int]) -> None:
    result = await webservers.probe(tls_check(ports["reset"], control_sni=CONTROL))
    assert result.verdict is Verdict.TLS_RESET, result.detail
    assert f"with control SNI {CONTROL} too" in result.detail


async def test_both_handshakes_fit_in_the_timeout(ports: dict[str, int]) -> None:
    result = await webservers.probe(tls_check(ports["silent"], control_sni=CONTROL), timeout="1s")
    assert result.verdict is Verdict.TLS_TIMEOUT, result.detail
    # The first handshake gave up at (at most) half the timeout, leaving the retry the rest.
    assert 0.3 < result.phases["tls"] < 0.55
    assert 0.9 < result.duration < 1.2


async def test_invalid_certificate_is_not_retried_as_sni_blocking(ports: dict[str, int]) -> None:
    result = await webservers.probe(tls_check(ports["unknown_ca"], control_sni=CONTROL))
    assert result.verdict is Verdict.TLS_CERT_INVALID, result.detail
    assert CONTROL not in result.detail


async def test_a_doh_query_does_not_change_the_tls_probes_client_hello() -> None:
    # httpcore sets ALPN on the context it is given; DoH once got the tls probe's own, so
    # after the first DoH query every tls check offered ALPN http/1.1 (another fingerprint).
    offered: list[str | None] = []
    context = certs.server_context(certs.issue(NAME))
    context.set_alpn_protocols(["http/1.1"])

    def record_alpn(sock: socket.socket) -> None:
        sock.settimeout(webservers.HOLD_SECONDS)
        with context.wrap_socket(sock, server_side=True) as tls:
            offered.append(tls.selected_alpn_protocol())

    with DnsServer({NAME: records("127.0.0.1")}) as dns, webservers.serve(record_alpn) as port:
        loaded = webservers.config(
            [
                {"name": "doh", "kind": "dns", "target": NAME, "resolvers": ["doh"]},
                {"name": "tls", **tls_check(port)},
            ],
            resolvers={"doh": dns.https_url},
        )
        env = ProbeEnv(loaded)
        try:
            doh, tls = [await run_check(check, env) for check in loaded.checks()]
        finally:
            await env.aclose()
    assert doh.verdict is Verdict.OK, doh.detail
    assert tls.verdict is Verdict.OK, tls.detail
    assert offered == [None]
