"""The stun prober against a real STUN server on loopback: success with the mapped address,
retransmission, silence, ICMP port unreachable, and answers that are not what was asked."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import pytest

from exporter.config import load_text
from exporter.probeenv import ProbeEnv
from exporter.probes import run_check
from exporter.probes.stun import StunError, binding_request, parse_response
from exporter.result import Result
from exporter.verdicts import Verdict
from peers import stunserver


def env_for(target: str, timeout: str = "2s", extra: str = "") -> ProbeEnv:
    config = load_text(
        f"""
services:
  voice:
    checks:
      - {{name: calls, kind: stun, target: "{target}", timeout: {timeout}, interval: 10s{extra}}}
"""
    )
    return ProbeEnv(config)


async def run(env: ProbeEnv) -> Result:
    return await run_check(next(env.config.checks()), env)


def closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_binding_success_reports_rtt_and_mapped_address() -> None:
    server, port = await stunserver.start()
    try:
        result = await run(env_for(f"127.0.0.1:{port}"))
    finally:
        server.close()
    assert result.verdict is Verdict.OK, result.detail
    assert result.rtt is not None and 0 < result.rtt < 0.5
    assert "mapped address 127.0.0.1:" in result.detail
    assert set(result.phases) == {"resolve", "first_byte"}
    assert result.address == "127.0.0.1"


async def test_classic_server_with_mapped_address_only_is_ok() -> None:
    server, port = await stunserver.start(mode="classic")
    try:
        result = await run(env_for(f"127.0.0.1:{port}"))
    finally:
        server.close()
    assert result.verdict is Verdict.OK, result.detail
    assert "mapped address 127.0.0.1:" in result.detail


async def test_lost_requests_are_retransmitted_with_backoff() -> None:
    # Two requests lost: answers to the third, sent 0.5 + 1 s after the first.
    server, port = await stunserver.start(ignore_first=2)
    started = time.monotonic()
    try:
        result = await run(env_for(f"127.0.0.1:{port}", timeout="3s"))
    finally:
        server.close()
    assert result.verdict is Verdict.OK, result.detail
    assert server.requests == 3
    assert 1.4 < time.monotonic() - started < 2.5
    assert "3 request(s)" in result.detail


async def test_silence_is_udp_timeout_within_the_deadline() -> None:
    server, port = await stunserver.start(mode="silent")
    started = time.monotonic()
    try:
        result = await run(env_for(f"127.0.0.1:{port}", timeout="1200ms"))
    finally:
        server.close()
    elapsed = time.monotonic() - started
    assert result.verdict is Verdict.UDP_TIMEOUT, result.detail
    assert 1.1 < elapsed < 1.4
    # 0.5 s, then 1 s would overrun: two sends fit in 1.2 s.
    assert server.requests == 2


async def test_icmp_port_unreachable_is_udp_error() -> None:
    result = await run(env_for(f"127.0.0.1:{closed_udp_port()}"))
    assert result.verdict is Verdict.UDP_ERROR, result.detail
    assert "Connection refused" in result.detail or "ConnectionRefused" in result.detail
    assert result.duration < 1.0


@pytest.mark.parametrize(
    ("mode", "evidence"),
    [
        ("error", "Binding Error Response 400 Bad Request"),
        ("garbage", "not a STUN message"),
        ("truncated", "length field"),
    ],
)
async def test_bad_answers_are_udp_error(mode: str, evidence: str) -> None:
    server, port = await stunserver.start(mode=mode)
    try:
        result = await run(env_for(f"127.0.0.1:{port}"))
    finally:
        server.close()
    assert result.verdict is Verdict.UDP_ERROR, result.detail
    assert evidence in result.detail


async def test_answers_for_another_transaction_are_ignored() -> None:
    server, port = await stunserver.start(mode="other-transaction")
    try:
        result = await run(env_for(f"127.0.0.1:{port}", timeout="700ms"))
    finally:
        server.close()
    assert result.verdict is Verdict.UDP_TIMEOUT, result.detail


async def test_a_silent_address_does_not_take_the_whole_timeout_from_the_next() -> None:
    silent, silent_port = await stunserver.start(host="127.0.0.2", mode="silent")
    server, port = await stunserver.start(host="127.0.0.3", port=silent_port)
    try:
        env = env_for(
            f"lab.invalid:{port}", timeout="2s", extra=", address: [127.0.0.2, 127.0.0.3]"
        )
        result = await run(env)
    finally:
        silent.close()
        server.close()
    assert result.verdict is Verdict.OK, result.detail
    assert result.address == "127.0.0.3"
    assert 0.9 < result.duration < 1.3


def test_parser_survives_every_truncation_and_bit_flip() -> None:
    txid = b"0123456789ab"
    good = stunserver.StunServer().reply(txid, "192.0.2.1", 5000)
    assert good is not None
    assert parse_response(good, txid).mapped == "192.0.2.1:5000"
    for cut in range(len(good)):
        with pytest.raises(StunError):
            parse_response(good[:cut], txid)
    for index in range(len(good)):
        for bit in range(8):
            flipped = bytearray(good)
            flipped[index] ^= 1 << bit
            # Anything but StunError (an IndexError, a ValueError) would fail the test.
            with contextlib.suppress(StunError):
                parse_response(bytes(flipped), txid)


def test_ipv6_mapped_address_is_unmasked_with_the_transaction_id() -> None:
    txid = b"\x01" * 12
    reply = stunserver.StunServer().reply(txid, "2001:db8::1", 443)
    assert reply is not None
    assert parse_response(reply, txid).mapped == "[2001:db8::1]:443"


def test_request_is_a_bare_binding_request() -> None:
    request = binding_request(b"x" * 12)
    assert request == b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"x" * 12


async def test_many_probes_run_concurrently_without_crosstalk() -> None:
    server, port = await stunserver.start()
    env = env_for(f"127.0.0.1:{port}")
    try:
        results = await asyncio.gather(*(run(env) for _ in range(200)))
    finally:
        server.close()
    assert {r.verdict for r in results} == {Verdict.OK}


async def test_a_flood_of_foreign_answers_ends_the_attempt_instead_of_costing_cpu() -> None:
    server, port = await stunserver.start(mode="flood")
    try:
        result = await run(env_for(f"127.0.0.1:{port}", timeout="2s"))
    finally:
        server.close()
    assert result.verdict is Verdict.UDP_ERROR, result.detail
    assert "flooded" in result.detail
    assert result.duration < 1.0  # not held until the deadline
