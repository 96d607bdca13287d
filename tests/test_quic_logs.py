"""A hostile QUIC peer cannot write to the exporter's log at error level: what aioquic says
about the peer's behaviour (here: a Version Negotiation offering no version we speak) is
logged at debug, and not at all above it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from peers.exporterproc import REPO

UNKNOWN_VERSION = bytes.fromhex("1a2a3a4a")  # a reserved, never-spoken QUIC version


def version_negotiation(initial: bytes) -> bytes | None:
    """The Version Negotiation reply (RFC 9000 17.2.1) to a long-header packet: the client's
    connection IDs swapped, and only UNKNOWN_VERSION on offer."""
    if len(initial) < 7 or not initial[0] & 0x80:
        return None
    dcid_len = initial[5]
    dcid = initial[6 : 6 + dcid_len]
    scid_len = initial[6 + dcid_len]
    scid = initial[7 + dcid_len : 7 + dcid_len + scid_len]
    return (
        bytes([0x80 | 0x2A]) + b"\0\0\0\0" + bytes([len(scid)]) + scid
        + bytes([len(dcid)]) + dcid + UNKNOWN_VERSION
    )  # fmt: skip


@pytest.fixture
def no_common_version() -> Iterator[int]:
    """A UDP port that answers every QUIC Initial with a Version Negotiation."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(65535)
            except TimeoutError:
                continue
            reply = version_negotiation(data)
            if reply is not None:
                sock.sendto(reply, addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def once(tmp_path: Path, port: int, level: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(
        "services:\n  s:\n    checks:\n"
        f"      - {{name: q, kind: quic, target: '127.0.0.1:{port}', timeout: 1s}}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "--once", f"--config.file={path}",
         f"--log.level={level}"],
        cwd=REPO, capture_output=True, text=True, timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # the check fails: the peer speaks no v1
    return done.stderr


def test_a_peer_offering_no_common_version_logs_nothing_at_info(
    tmp_path: Path, no_common_version: int
) -> None:
    stderr = once(tmp_path, no_common_version, "info")
    assert "common protocol version" not in stderr
    assert "level=error" not in stderr


def test_a_peer_offering_no_common_version_is_logged_at_debug(
    tmp_path: Path, no_common_version: int
) -> None:
    stderr = once(tmp_path, no_common_version, "debug")
    lines = [line for line in stderr.splitlines() if "common protocol version" in line]
    assert lines, stderr
    assert all("level=debug source=quic" in line for line in lines), lines
