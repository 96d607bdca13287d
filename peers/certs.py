"""Throwaway certificates for the tests' TLS, DoT, DoH and HTTPS servers: one trustme CA per
test session, written to PEM files that configurations (`ca_file`) and subprocesses can use."""

from __future__ import annotations

import atexit
import datetime
import shutil
import ssl
import tempfile
import threading
from pathlib import Path

import trustme

_lock = threading.RLock()
_state: dict[str, object] = {}
_issued: dict[tuple[str, ...], tuple[str, str]] = {}


def _dir() -> Path:
    directory = _state.get("dir")
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="reachability-certs-"))
        atexit.register(shutil.rmtree, directory, True)
        _state["dir"] = directory
    assert isinstance(directory, Path)
    return directory


def _ca(key: str) -> trustme.CA:
    with _lock:
        authority = _state.get(key)
        if authority is None:
            authority = _state[key] = trustme.CA(organization_name=f"reachability tests {key}")
    assert isinstance(authority, trustme.CA)
    return authority


def ca() -> trustme.CA:
    """The session's trusted CA (what tests put in `defaults.ca_file`)."""
    return _ca("ca")


def ca_pem_path() -> str:
    """PEM file of the trusted CA."""
    with _lock:
        path = _dir() / "ca.pem"
        if not path.exists():
            ca().cert_pem.write_to_path(str(path))
    return str(path)


def _write(tag: str, leaf: trustme.LeafCert, names: tuple[str, ...]) -> tuple[str, str]:
    with _lock:
        cached = _issued.get((tag, *names))
        if cached is not None:
            return cached
        stem = f"{tag}-{len(_issued)}"
        cert_path, key_path = _dir() / f"{stem}.crt", _dir() / f"{stem}.key"
        with open(cert_path, "wb") as handle:
            for blob in leaf.cert_chain_pems:
                handle.write(blob.bytes())
        leaf.private_key_pem.write_to_path(str(key_path))
        _issued[(tag, *names)] = (str(cert_path), str(key_path))
        return str(cert_path), str(key_path)


def issue(*names: str) -> tuple[str, str]:
    """A valid server certificate for `names` (host names or IP literals), signed by `ca()`:
    (certificate chain PEM path, private key PEM path)."""
    return _write("valid", ca().issue_cert(*names), names)


def issue_expired(*names: str) -> tuple[str, str]:
    """Signed by `ca()` for `names`, but its validity ended yesterday."""
    now = datetime.datetime.now(datetime.UTC)
    leaf = ca().issue_cert(
        *names,
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    return _write("expired", leaf, names)


def issue_wrong_name(*names: str) -> tuple[str, str]:
    """Signed by `ca()`, valid, but for a name that is none of `names`."""
    return _write("wrong-name", ca().issue_cert("wrong-name.invalid"), names)


def issue_unknown_ca(*names: str) -> tuple[str, str]:
    """For `names`, valid, but signed by a CA nobody trusts (an intercepting middlebox)."""
    return _write("unknown-ca", _ca("untrusted").issue_cert(*names), names)


def server_context(cert_and_key: tuple[str, str]) -> ssl.SSLContext:
    """A server-side TLS context for a (certificate, key) pair from one of the issue functions."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*cert_and_key)
    return context
