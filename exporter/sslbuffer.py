"""The size of the buffer asyncio's TLS transports receive ciphertext into.

asyncio allocates 256 KiB per TLS connection (SSLProtocol.max_size) and zero-fills it: a
quarter of a megabyte of resident memory per open connection. The tls, http and transfer
probes and DNS over TLS run TLS in their own stream (exporter/tlsbio.py) and need no such
buffer; DNS over HTTPS (httpx) still uses asyncio's TLS, and gets this smaller one. A TLS
record is at most 16 KiB of plaintext (RFC 8446 5.1), so 64 KiB still takes several records
per read; what changes is only how many bytes one recv() may return, never what a probe
sees."""

from __future__ import annotations

import asyncio.sslproto

TLS_RECEIVE_BUFFER = 64 * 1024


def apply() -> None:
    """Set the size for every TLS transport the event loop creates from now on."""
    asyncio.sslproto.SSLProtocol.max_size = TLS_RECEIVE_BUFFER
