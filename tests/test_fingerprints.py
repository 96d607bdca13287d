"""Browser-shaped ClientHellos: the builder's output parsed back (lengths, extension order as
in the shape files, GREASE placement, fresh real key shares), and the tls check's
`fingerprints` against real TLS servers on loopback, one behind a filter that resets only
hellos carrying Chrome's ALPS extension, as a fingerprinting DPI box does."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519

from exporter import classify, errors
from exporter.config import load_text
from exporter.fingerprints import attempt, hello
from exporter.metrics import ReachabilityCollector, ResultStore
from exporter.probeenv import ProbeEnv
from exporter.probes import run_check
from exporter.verdicts import Verdict
from peers import certs, webservers

NAME = "fp.test"
# Chrome's ALPS extension for h2 (codepoint 17613): in no other shape, nor in OpenSSL's.
CHROME_ALPS = bytes.fromhex("44cd00050003026832")


def parse(record: bytes) -> dict[str, Any]:
    """A ClientHello record taken apart; every length must add up exactly."""
    assert record[0] == 0x16
    (length,) = struct.unpack("!H", record[3:5])
    assert length == len(record) - 5
    body = record[5:]
    assert body[0] == 1 and int.from_bytes(body[1:4]) == len(body) - 4
    at = 4 + 2 + 32
    session_id = body[at + 1 : at + 1 + body[at]]
    at += 1 + body[at]
    (cipher_len,) = struct.unpack("!H", body[at : at + 2])
    ciphers = [
        struct.unpack("!H", body[i : i + 2])[0] for i in range(at + 2, at + 2 + cipher_len, 2)
    ]
    at += 2 + cipher_len
    at += 1 + body[at]  # compression methods
    (ext_len,) = struct.unpack("!H", body[at : at + 2])
    at += 2
    assert at + ext_len == len(body)
    extensions: list[tuple[int, bytes]] = []
    while at < len(body):
        kind, size = struct.unpack("!HH", body[at : at + 4])
        extensions.append((kind, body[at + 4 : at + 4 + size]))
        at += 4 + size
    assert at == len(body)
    return {"session_id": session_id, "ciphers": ciphers, "extensions": extensions}


def is_grease(value: int) -> bool:
    return value in hello.GREASE_VALUES


def key_shares(parsed: dict[str, Any]) -> dict[int, bytes]:
    body = dict(parsed["extensions"])[51]
    shares, at = {}, 2
    assert struct.unpack("!H", body[:2])[0] == len(body) - 2
    while at < len(body):
        group, size = struct.unpack("!HH", body[at : at + 4])
        shares[group] = body[at + 4 : at + 4 + size]
        at += 4 + size
    return shares


def test_chrome_hello_parses_back_with_grease_first_and_last() -> None:
    shape = hello.load("chrome")
    parsed = parse(hello.client_hello(shape, NAME))
    assert len(parsed["session_id"]) == 32
    assert is_grease(parsed["ciphers"][0]) and len(parsed["ciphers"]) == 16
    assert parsed["ciphers"][1:4] == [0x1301, 0x1302, 0x1303]
    kinds = [kind for kind, _ in parsed["extensions"]]
    assert is_grease(kinds[0]) and is_grease(kinds[-1]) and kinds[0] != kinds[-1]
    assert parsed["extensions"][0][1] == b"" and parsed["extensions"][-1][1] == b"\x00"
    assert not any(is_grease(kind) for kind in kinds[1:-1])
    bodies = dict(parsed["extensions"])
    groups = [struct.unpack("!H", bodies[10][i : i + 2])[0] for i in range(2, len(bodies[10]), 2)]
    assert is_grease(groups[0]) and groups[1:] == [0x11EC, 0x001D, 0x0017, 0x0018]
    shares = key_shares(parsed)
    # The same GREASE group value leads supported_groups and key_share.
    assert list(shares) == [groups[0], 0x11EC, 0x001D] and shares[groups[0]] == b"\x00"
    assert bodies[0] == b"\x00\x0a\x00\x00\x07" + NAME.encode()
    assert bodies[16] == b"\x00\x0c\x02h2\x08http/1.1"
    assert bodies[0x44CD] == b"\x00\x03\x02h2"
    ech = bodies[0xFE0D]
    assert ech[0] == 0 and len(ech) - 1 - 4 - 1 - 2 - 32 - 2 - 16 in (128, 160, 192, 224)


def test_chrome_permutes_its_extensions_and_firefox_keeps_the_shape_file_order() -> None:
    chrome = hello.load("chrome")
    listed = {hello.EXTENSION_TYPES.get(e["name"]) for e in chrome.extensions} - {None}
    orders = set()
    for _ in range(8):
        kinds = [kind for kind, _ in parse(hello.client_hello(chrome, NAME))["extensions"]]
        assert set(kinds[1:-1]) == listed | {0x44CD}
        orders.add(tuple(kinds[1:-1]))
    assert len(orders) > 1, "Chrome's extension order never changed"
    firefox = hello.load("firefox")
    expected = [hello.EXTENSION_TYPES[e["name"]] for e in firefox.extensions]
    for _ in range(3):
        parsed = parse(hello.client_hello(firefox, NAME))
        assert [kind for kind, _ in parsed["extensions"]] == expected
        assert not any(is_grease(c) for c in parsed["ciphers"])
        assert parsed["ciphers"][:3] == [0x1301, 0x1303, 0x1302]


def test_key_shares_are_fresh_public_keys_that_parse() -> None:
    firefox = hello.load("firefox")
    first = key_shares(parse(hello.client_hello(firefox, NAME)))
    second = key_shares(parse(hello.client_hello(firefox, NAME)))
    assert list(first) == [0x11EC, 0x001D, 0x0017]
    assert len(first[0x11EC]) == 1184 + 32 and len(first[0x001D]) == 32
    # ML-KEM-768 encapsulation key, X25519 and P-256 points all load as real keys.
    mlkem.MLKEM768PublicKey.from_public_bytes(first[0x11EC][:1184])
    x25519.X25519PublicKey.from_public_bytes(first[0x001D])
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), first[0x0017])
    # NSS reuses its X25519 key inside the hybrid share.
    assert first[0x11EC][1184:] == first[0x001D]
    assert all(first[group] != second[group] for group in first)


def test_no_sni_is_sent_to_an_ip_literal() -> None:
    kinds = [
        k for k, _ in parse(hello.client_hello(hello.load("firefox"), "192.0.2.7"))["extensions"]
    ]
    assert 0 not in kinds


def test_fingerprint_blocking_needs_one_hello_through_and_a_listed_one_failing() -> None:
    judge = classify.fingerprint_blocked
    reset = errors.TlsClosed("reset")
    cert = errors.CertificateInvalid("bad certificate")
    assert not judge(None, {"chrome": True, "firefox": True})
    assert judge(None, {"chrome": False, "firefox": True})
    assert judge(reset, {"chrome": False, "firefox": True})
    assert not judge(reset, {"chrome": False, "firefox": False})
    assert not judge(reset, {"chrome": True, "firefox": True})
    assert not judge(cert, {"chrome": False, "firefox": True})
    assert not judge(None, {})
    blocked = errors.FingerprintBlocked("chrome reset")
    assert classify.verdict(blocked) is Verdict.TLS_FINGERPRINT_BLOCKED


def _filter(needle: bytes, backend: webservers.Handler) -> webservers.Handler:
    """Reset a connection whose first record carries `needle`; hand any other to `backend`."""

    def handle(sock: socket.socket) -> None:
        sock.settimeout(5)
        deadline = time.monotonic() + 5
        while True:
            peeked = sock.recv(16384, socket.MSG_PEEK)
            whole = len(peeked) >= 5 and len(peeked) >= 5 + int.from_bytes(peeked[3:5])
            if not peeked or whole or time.monotonic() > deadline:
                break
            time.sleep(0.001)
        if needle in peeked:
            webservers.reset(sock)
            return
        backend(sock)

    return handle


def _alert(sock: socket.socket) -> None:
    """Answer any hello with a fatal handshake_failure alert, as a server (or a censor
    posing as one) refusing that ClientHello does."""
    sock.settimeout(5)
    sock.recv(16384)
    sock.sendall(bytes.fromhex("15030300020228"))
    sock.close()


@pytest.fixture(scope="module")
def ports() -> Iterator[dict[str, int]]:
    tls = webservers.tls_handler(certs.server_context(certs.issue(NAME)))
    handlers = {
        "alert": _alert,
        "not_tls": webservers.not_tls,
        "silent": webservers.silent,
        "open": tls,
        "chrome_filter": _filter(CHROME_ALPS, tls),
        "reset_all": webservers.reset_on_hello,
    }
    with ExitStack() as stack:
        yield {name: stack.enter_context(webservers.serve(h)) for name, h in handlers.items()}


def _env(port: int) -> ProbeEnv:
    return ProbeEnv(
        load_text(
            f"""
defaults: {{ca_file: {certs.ca_pem_path()}}}
services:
  web:
    checks:
      - {{name: tls, kind: tls, target: "{NAME}:{port}", address: [127.0.0.1], timeout: 2s,
          fingerprints: [chrome, firefox]}}
"""
        )
    )


async def _run(port: int) -> tuple[Any, ProbeEnv]:
    env = _env(port)
    try:
        return await run_check(next(env.config.checks()), env), env
    finally:
        await env.aclose()


async def test_every_shape_through_an_open_network_is_ok(ports: dict[str, int]) -> None:
    result, _ = await _run(ports["open"])
    assert result.verdict is Verdict.OK, result.detail
    assert result.fingerprints == {"chrome": True, "firefox": True}


async def test_a_filter_resetting_chrome_hellos_is_tls_fingerprint_blocked(
    ports: dict[str, int],
) -> None:
    result, env = await _run(ports["chrome_filter"])
    assert result.verdict is Verdict.TLS_FINGERPRINT_BLOCKED, result.detail
    assert result.fingerprints == {"chrome": False, "firefox": True}
    assert "Chrome 143 ClientHello" in result.detail and "ServerHello" in result.detail
    store = ResultStore()
    store.apply_config(env.config)
    store.record(next(env.config.checks()), result)
    samples = {
        s.labels["fingerprint"]: s.value
        for family in ReachabilityCollector(store).collect()
        for s in family.samples
        if s.name == "reachability_tls_fingerprint_success"
    }
    assert samples == {"chrome": 0.0, "firefox": 1.0}


async def test_when_every_hello_is_reset_the_check_keeps_its_own_verdict(
    ports: dict[str, int],
) -> None:
    result, _ = await _run(ports["reset_all"])
    assert result.verdict is Verdict.TLS_RESET, result.detail
    assert result.fingerprints == {"chrome": False, "firefox": False}


@pytest.mark.parametrize(
    ("server", "reason"),
    [("alert", "alert 40 (level 2)"), ("not_tls", "not a ServerHello"), ("silent", "no answer")],
)
async def test_an_alert_garbage_or_silence_is_a_failed_shape(
    ports: dict[str, int], server: str, reason: str
) -> None:
    loop = asyncio.get_running_loop()
    outcome = await attempt.try_shape("chrome", "127.0.0.1", ports[server], NAME, loop.time() + 1)
    assert not outcome.ok
    assert reason in outcome.detail
