"""The quic prober against a real aioquic server on loopback: a verified handshake, the
certificate failures, silence versus answered-then-stalled, ICMP port unreachable, and a
deadline that holds."""

from __future__ import annotations

import asyncio
import socket
import time

from exporter.config import load_text
from exporter.probeenv import ProbeEnv
from exporter.probes import run_check
from exporter.result import Result
from exporter.verdicts import Verdict
from peers import certs, quicserver

NAME = "quic.test"


def env_for(target: str, timeout: str = "2s", extra: str = "", ca: bool = True) -> ProbeEnv:
    defaults = f"defaults: {{ca_file: {certs.ca_pem_path()}}}\n" if ca else ""
    config = load_text(
        f"""{defaults}
services:
  video:
    checks:
      - {{name: quic, kind: quic, target: "{target}", timeout: {timeout}, interval: 10s{extra}}}
"""
    )
    return ProbeEnv(config)


async def run(env: ProbeEnv) -> Result:
    return await run_check(next(env.config.checks()), env)


def sni(name: str = NAME) -> str:
    return f", sni: {name}, address: [127.0.0.1]"


async def test_handshake_with_trusted_certificate_is_ok() -> None:
    server, port = await quicserver.start(certs.issue(NAME))
    try:
        result = await run(env_for(f"{NAME}:{port}", extra=", address: [127.0.0.1]"))
    finally:
        server.close()
    assert result.verdict is Verdict.OK, result.detail
    assert set(result.phases) == {"resolve", "tls"}
    assert 0 < result.phases["tls"] < 1.0
    assert result.address == "127.0.0.1"


async def test_sni_option_is_the_name_verified() -> None:
    server, port = await quicserver.start(certs.issue("other.test"))
    try:
        ok = await run(env_for(f"127.0.0.1:{port}", extra=sni("other.test")))
        wrong = await run(env_for(f"127.0.0.1:{port}", extra=sni(NAME)))
    finally:
        server.close()
    assert ok.verdict is Verdict.OK, ok.detail
    assert wrong.verdict is Verdict.TLS_CERT_INVALID, wrong.detail
    assert "doesn't match" in wrong.detail


async def test_certificate_problems_are_tls_cert_invalid() -> None:
    for issue in (certs.issue_expired, certs.issue_wrong_name, certs.issue_unknown_ca):
        server, port = await quicserver.start(issue(NAME))
        try:
            result = await run(env_for(f"127.0.0.1:{port}", extra=sni()))
        finally:
            server.close()
        assert result.verdict is Verdict.TLS_CERT_INVALID, (issue.__name__, result.detail)


async def test_without_the_ca_file_the_lab_ca_is_unknown() -> None:
    server, port = await quicserver.start(certs.issue(NAME))
    try:
        result = await run(env_for(f"127.0.0.1:{port}", extra=sni(), ca=False))
    finally:
        server.close()
    assert result.verdict is Verdict.TLS_CERT_INVALID, result.detail


async def test_verify_false_accepts_any_certificate() -> None:
    server, port = await quicserver.start(certs.issue_unknown_ca(NAME))
    try:
        result = await run(env_for(f"127.0.0.1:{port}", extra=sni() + ", verify: false"))
    finally:
        server.close()
    assert result.verdict is Verdict.OK, result.detail


async def test_server_without_h3_is_tls_error() -> None:
    server, port = await quicserver.start(certs.issue(NAME), alpn=["hq-interop"])
    try:
        result = await run(env_for(f"127.0.0.1:{port}", extra=sni()))
    finally:
        server.close()
    assert result.verdict is Verdict.TLS_ERROR, result.detail
    assert "alert 120" in result.detail


async def test_no_answer_at_all_is_udp_timeout_at_the_deadline() -> None:
    # A bound socket that never answers: the kernel sends no ICMP error either.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        started = time.monotonic()
        result = await run(env_for(f"127.0.0.1:{port}", timeout="1s", extra=sni()))
        elapsed = time.monotonic() - started
    assert result.verdict is Verdict.UDP_TIMEOUT, result.detail
    assert 0.95 < elapsed < 1.2


async def test_answered_then_stalled_is_tls_timeout() -> None:
    # A certificate too big for the server's first datagram, so one reply cannot finish it.
    padding = [f"padding-{i}.{NAME}" for i in range(80)]
    server, port = await quicserver.start(certs.issue(NAME, *padding))
    relay, relay_port = await quicserver.start_stalling_relay(("127.0.0.1", port), replies=1)
    try:
        started = time.monotonic()
        result = await run(env_for(f"127.0.0.1:{relay_port}", timeout="1500ms", extra=sni()))
        elapsed = time.monotonic() - started
    finally:
        relay.close()
        server.close()
    assert result.verdict is Verdict.TLS_TIMEOUT, result.detail
    assert "stalled after 1 datagram" in result.detail
    assert 1.45 < elapsed < 1.7


async def test_icmp_port_unreachable_is_udp_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await run(env_for(f"127.0.0.1:{port}", extra=sni()))
    assert result.verdict is Verdict.UDP_ERROR, result.detail
    assert result.duration < 1.0


async def test_a_silent_address_leaves_time_for_the_next() -> None:
    server, port = await quicserver.start(certs.issue(NAME), host="127.0.0.3")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.2", port))
        try:
            result = await run(
                env_for(f"{NAME}:{port}", timeout="2s", extra=", address: [127.0.0.2, 127.0.0.3]")
            )
        finally:
            server.close()
    assert result.verdict is Verdict.OK, result.detail
    assert result.address == "127.0.0.3"


async def test_concurrent_handshakes() -> None:
    server, port = await quicserver.start(certs.issue(NAME))
    env = env_for(f"127.0.0.1:{port}", timeout="5s", extra=sni())
    try:
        results = await asyncio.gather(*(run(env) for _ in range(20)))
    finally:
        server.close()
    assert {r.verdict for r in results} == {Verdict.OK}, [r.detail for r in results]


def test_aioquic_tells_of_a_close_at_once_through_the_one_accessor() -> None:
    # The accessor reads aioquic's private state; on an aioquic where it no longer can, this
    # fails instead of every refused QUIC check turning into a timeout.
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    from exporter.probes._quicpeek import early_close

    connection = QuicConnection(
        configuration=QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name=NAME)
    )
    connection.connect(("127.0.0.1", 443), now=0.0)
    assert early_close(connection) is None
    connection.close(error_code=0x101, reason_phrase="bye")
    closed = early_close(connection)
    assert closed is not None
    assert (closed.error_code, closed.reason_phrase) == (0x101, "bye")
