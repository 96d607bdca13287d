"""What a probe trusts: the system roots plus `defaults.ca_file`, for TLS over TCP (an
ssl.SSLContext) and for QUIC (aioquic's configuration), written once. ProbeEnv keeps what
these build once per loaded configuration: loading roots costs more than a handshake."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_verify_paths = ssl.get_default_verify_paths()
# The system roots as OpenSSL's hashed directory: looked up lazily, one file per issuer,
# where the bundle file would be parsed whole on every QUIC handshake (aioquic builds a new
# store each time). Without such a directory, the bundle it is.
SYSTEM_CAPATH = (
    _verify_paths.capath
    if _verify_paths.capath and any(Path(_verify_paths.capath).glob("*.0"))
    else None
)
SYSTEM_CAFILE = None if SYSTEM_CAPATH else _verify_paths.cafile


def tls_context(ca_file: str | None, verify: bool, alpn: Sequence[str] = ()) -> ssl.SSLContext:
    """System roots plus `ca_file`; with verify off, no checks at all (a probe that must only
    prove the handshake completes, e.g. the control-SNI retry), and no roots loaded.

    What ssl.create_default_context() sets up, except that the roots come from the hashed
    directory, looked up as handshakes need them: the default context parses the whole
    bundle (~140 roots) into every context, about 1 MB of resident memory each."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, hostname checked
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return _offer(context, alpn)
    if SYSTEM_CAPATH or SYSTEM_CAFILE:
        context.load_verify_locations(cafile=SYSTEM_CAFILE, capath=SYSTEM_CAPATH)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return _offer(context, alpn)


def _offer(context: ssl.SSLContext, alpn: Sequence[str]) -> ssl.SSLContext:
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


@functools.cache
def _system_bundle() -> bytes:
    return Path(SYSTEM_CAFILE).read_bytes() if SYSTEM_CAFILE else b""


def load_quic_trust(configuration: Any, ca_file: str | None) -> None:
    """Make an aioquic QuicConfiguration trust what the TLS probes trust (aioquic would
    otherwise use certifi's roots). The roots go in as the hashed directory where there is
    one, which leaves aioquic's single file slot to ca_file."""
    if ca_file and SYSTEM_CAFILE:
        # No hashed directory and two files: the system bundle goes in as data (parsed per
        # handshake, the price of such a system).
        configuration.load_verify_locations(cafile=ca_file, cadata=_system_bundle())
    else:
        configuration.load_verify_locations(cafile=ca_file or SYSTEM_CAFILE, capath=SYSTEM_CAPATH)
