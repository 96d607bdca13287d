"""TLS over memory buffers: one OpenSSL client session that a plain byte stream feeds with
the ciphertext it receives and drains of the ciphertext to send.

A probe's stream runs TLS itself, in place over its plain transport, instead of stacking
asyncio's SSL protocol on top: that protocol is a general state machine (flow control both
ways, buffered reads, graceful shutdown) whose Python work cost about a third of a tls probe's
CPU, and it took a 64 KiB receive buffer per connection. A probe needs only the handshake,
reads, small writes and an abort, and the socket stays owned by the one plain transport from
connect to close, whatever happens in the handshake."""

from __future__ import annotations

import ssl

# OpenSSL returns at most one record per read, and a record holds at most 16 KiB of
# plaintext (RFC 8446 5.1): asking for more would only allocate and shrink a bigger buffer.
RECORD_PLAINTEXT_MAX = 16 * 1024


class TlsSession:
    """A client TLS session over memory BIOs. Every method may raise ssl.SSLError (a
    certificate that does not verify is ssl.SSLCertVerificationError)."""

    __slots__ = ("_incoming", "_outgoing", "ssl_object")

    def __init__(self, context: ssl.SSLContext, server_hostname: str) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(
            self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname
        )

    def feed(self, ciphertext: bytes) -> None:
        """Bytes received from the peer."""
        self._incoming.write(ciphertext)

    @property
    def unread(self) -> int:
        """Ciphertext fed and not yet taken in by OpenSSL, which reads records from the
        buffer one at a time (no read-ahead): after the handshake, the records behind it."""
        return self._incoming.pending

    def handshake(self) -> bool:
        """Advance the handshake with what has been fed; True once it is complete."""
        try:
            self.ssl_object.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def decrypt(self) -> tuple[bytes, bool]:
        """The plaintext of every whole record fed so far, and whether the peer sent
        close_notify. Records without application data (session tickets) yield nothing."""
        chunks: list[bytes] = []
        ssl_object, incoming = self.ssl_object, self._incoming
        read = ssl_object.read
        try:
            # Read while a record may be complete: bytes in the buffer, or plaintext of a
            # record OpenSSL holds. Without either, a read could only raise SSLWantReadError,
            # an exception object built from OpenSSL's error queue (as costly as the read).
            while incoming.pending or ssl_object.pending():
                chunk = read(RECORD_PLAINTEXT_MAX)
                if not chunk:
                    return b"".join(chunks), True
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        if not chunks:
            return b"", False
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), False

    def encrypt(self, plaintext: bytes) -> None:
        self.ssl_object.write(plaintext)

    def ciphertext_to_send(self) -> bytes:
        """What the session has to send: handshake messages, encrypted writes, alerts."""
        return self._outgoing.read()
