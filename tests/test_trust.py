"""What a probe trusts (exporter/trust.py): the system roots, looked up in OpenSSL's hashed
directory as handshakes need them rather than parsed whole into every context, plus
`defaults.ca_file`. A root directory of our own stands in for the system's (SSL_CERT_DIR),
against a real TLS server on loopback."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter import trust
from peers import REPO, certs, webservers

NAME = "trust.test"

HANDSHAKE = """
import socket, sys
from exporter import trust
context = trust.tls_context(None, True)
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as sock:
    try:
        with context.wrap_socket(sock, server_hostname=sys.argv[2]):
            print("verified")
    except Exception as exc:
        print(type(exc).__name__)
"""


@pytest.fixture(scope="module")
def tls_port() -> Iterator[int]:
    handler = webservers.tls_handler(certs.server_context(certs.issue(NAME)))
    with webservers.serve(handler) as port:
        yield port


def _hashed_dir_with_our_ca(directory: Path) -> Path:
    """A directory laid out as update-ca-certificates lays out /etc/ssl/certs: each root
    linked under its subject hash."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command names a root by its subject hash"
    ca = certs.ca_pem_path()
    subject_hash = subprocess.run(
        [openssl, "x509", "-hash", "-noout", "-in", ca], capture_output=True, text=True, check=True
    ).stdout.strip()
    (directory / f"{subject_hash}.0").symlink_to(ca)
    return directory


def _handshake_with_system_roots(port: int, roots: Path) -> str:
    env = {**os.environ, "SSL_CERT_DIR": str(roots), "SSL_CERT_FILE": str(roots / "none.pem")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-c", HANDSHAKE, str(port), NAME],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=30,
    ).stdout.strip()


def test_a_root_in_the_systems_hashed_directory_is_trusted(tls_port: int, tmp_path: Path) -> None:
    assert _handshake_with_system_roots(tls_port, _hashed_dir_with_our_ca(tmp_path)) == "verified"


def test_without_that_root_the_same_server_does_not_verify(tls_port: int, tmp_path: Path) -> None:
    assert _handshake_with_system_roots(tls_port, tmp_path) == "SSLCertVerificationError"


def test_a_context_parses_no_system_root_until_a_handshake_needs_it() -> None:
    # The default context held every root of the bundle, about 1 MB of memory per context.
    context = trust.tls_context(certs.ca_pem_path(), True)
    if trust.SYSTEM_CAPATH is None:
        pytest.skip("no hashed root directory on this system: the bundle is loaded whole")
    assert context.cert_store_stats()["x509"] == 1  # ca_file's one CA, nothing else yet


def test_without_verification_no_roots_are_loaded_at_all() -> None:
    context = trust.tls_context(certs.ca_pem_path(), False)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    assert context.cert_store_stats()["x509"] == 0
