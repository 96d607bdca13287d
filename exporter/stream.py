"""A byte stream over one connected socket, plain or with TLS run in place over it
(exporter.tlsbio): bounded buffering, reads that say how the connection ended, and a close
that lets go of the socket at once. Every TCP probe talks through one; the TLS handshake's
failure is typed here (`exporter.errors`), its cause telling classify a reset from a stall,
a bad certificate or garbage."""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

from exporter import classify
from exporter.errors import CertificateInvalid, TlsClosed, TlsFailure
from exporter.result import PHASE_TLS, Phases
from exporter.tlsbio import TlsSession

# Bytes a Stream buffers before it stops reading from the socket: a server that floods us
# fills the kernel's window, not our memory.
READ_BUFFER_LIMIT = 256 * 1024

# Certificate (DER) -> notAfter; emptied when full, which a handful of targets never reach.
_EXPIRY_CACHE_SIZE = 1024
_expiry_cache: dict[bytes, float] = {}


class Stream(asyncio.Protocol):
    """A byte stream over a plain asyncio transport, with TLS in place once `start_tls` has
    run, and bounded buffering.

    Reads return what has arrived (at most `max_bytes`), b"" at a clean end, and raise the
    error that ended the connection (e.g. ConnectionResetError) once the data before it has
    been read. `first_data` is the loop time at which bytes first arrived since the last
    `mark()`: the first byte of a response, for the first_byte phase."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        # The socket under the transport, closed by close() itself (see there).
        self._sock = sock
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.first_data: float | None = None
        # Set by start_tls: from then on, what arrives is ciphertext for this session.
        self._tls: TlsSession | None = None
        # While the handshake runs: what start_tls waits for (None once it has finished).
        self._handshake: asyncio.Future[None] | None = None

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._tls is not None:
            data = self._tls_received(data)
            if not data:
                return
        if self.first_data is None:
            self.first_data = self._loop.time()
        self._buffer += data
        if len(self._buffer) >= READ_BUFFER_LIMIT and not self._paused and self._transport:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        # A peer that closes in the middle of our handshake hung up on it: a reset, as
        # asyncio's own TLS reports it. After the handshake, an end without close_notify
        # ends the stream like any other end.
        if self._handshake is not None:
            self._end_handshake(ConnectionResetError())
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handshake is not None:
            self._end_handshake(exc or TlsClosed("connection closed during the TLS handshake"))
        self._eof = True
        if exc is not None and self._error is None:
            self._error = exc
        self._wake()

    # TLS in place

    def _tls_received(self, ciphertext: bytes) -> bytes:
        """Feed the session; the plaintext that became readable (none while handshaking)."""
        tls = self._tls
        assert tls is not None
        tls.feed(ciphertext)
        if self._handshake is not None and (not self._step_handshake() or not tls.unread):
            # Still handshaking, or done with nothing after the server's Finished: asking
            # for plaintext now would only raise and catch SSLWantReadError.
            return b""
        try:
            plaintext, closed = tls.decrypt()
        except ssl.SSLError as exc:
            # A record that does not decrypt: the connection is unusable from here on.
            if self._error is None:
                self._error = exc
            self._eof = True
            self.close()
            self._wake()
            return b""
        self._send_ciphertext()
        if closed:
            self._eof = True
            self._wake()
        return plaintext

    def _step_handshake(self) -> bool:
        """Advance the handshake; True once it has completed."""
        tls = self._tls
        assert tls is not None
        try:
            done = tls.handshake()
        except ssl.SSLError as exc:
            self._send_ciphertext()  # our alert, as a TLS client would send it
            self._end_handshake(exc)
            self.close()  # nothing more is read from a peer the handshake failed with
            return False
        self._send_ciphertext()
        if done:
            self._end_handshake(None)
        return done

    def _end_handshake(self, exc: BaseException | None) -> None:
        waiter, self._handshake = self._handshake, None
        if waiter is None or waiter.done():
            return
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)

    def _send_ciphertext(self) -> None:
        tls, transport = self._tls, self._transport
        if tls is None or transport is None or transport.is_closing():
            return
        data = tls.ciphertext_to_send()
        if data:
            transport.write(data)

    def _take_error(self) -> BaseException:
        """The error that ended the connection, reported once: raising one exception
        object again and again would only grow its traceback. Later reads see the end."""
        error, self._error = self._error, None
        assert error is not None
        return error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # the stream API

    def mark(self) -> None:
        """Start watching for the next first byte (call before sending a request)."""
        self.first_data = None

    def pending_error(self) -> BaseException | None:
        """The error that ended the connection, if one did, for a writer that reads nothing
        (an upload) and would otherwise never hear of it; taken, as a read would take it."""
        return self._take_error() if self._error is not None else None

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet."""
        return len(self._buffer)

    @property
    def ended(self) -> bool:
        """The peer has finished sending (or the connection is gone)."""
        return self._eof

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._transport

    def get_extra_info(self, name: str) -> Any:
        if name == "ssl_object":
            return None if self._tls is None else self._tls.ssl_object
        return None if self._transport is None else self._transport.get_extra_info(name)

    async def read(self, max_bytes: int) -> bytes:
        while not self._buffer:
            if self._error is not None:
                raise self._take_error()
            if self._eof:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if len(self._buffer) <= max_bytes:
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
        if self._paused and len(self._buffer) < READ_BUFFER_LIMIT // 2 and self._transport:
            self._paused = False
            self._transport.resume_reading()
        return data

    async def read_exactly(self, count: int) -> bytes:
        """Exactly `count` bytes; asyncio.IncompleteReadError when the stream ends first."""
        data = b""
        while len(data) < count:
            chunk = await self.read(count - len(data))
            if not chunk:
                raise asyncio.IncompleteReadError(data, count)
            data += chunk
        return data

    def write(self, data: bytes) -> None:
        """Queue `data` for sending. Probes send only small requests, so there is no
        write-side flow control; a connection already gone raises its error."""
        if self._error is not None:
            raise self._take_error()
        if self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("connection closed before the request was sent")
        if self._tls is None:
            self._transport.write(data)
            return
        try:
            self._tls.encrypt(data)
        except ssl.SSLError as exc:
            self.close()
            raise ConnectionResetError(f"TLS refused the write: {exc}") from exc
        self._send_ciphertext()

    def close(self) -> None:
        """Drop the connection at once. A probe has what it came for; a graceful TLS
        shutdown would wait on the peer for nothing.

        The transport is aborted first, which takes the socket out of the event loop's
        selector and marks the transport closing; the socket is then closed here and now
        rather than by the transport a loop turn later, so that a probe that has returned has
        let go of its connection as the peer sees it (a server counting our connections sees
        a limit kept), with one packet (FIN, or RST over unread data), as any client's close
        sends. The descriptor number is free at once: asyncio lets a new transport take a
        number whose old transport is closing, and the old one's own close later is a no-op
        on the closed socket object."""
        if self._transport is not None:
            self._transport.abort()
        if self._sock is not None:
            self._sock.close()

    def cert_expiry(self) -> float | None:
        """The leaf certificate's notAfter (unix seconds) when it was verified, else None.
        Decoding the certificate and parsing its date cost more than the rest of a probe's
        Python work; the same certificate comes back run after run, so the answer is kept
        per certificate."""
        ssl_object = self.get_extra_info("ssl_object")
        if (
            not isinstance(ssl_object, ssl.SSLObject)
            or ssl_object.context.verify_mode == ssl.CERT_NONE
        ):
            return None
        der = ssl_object.getpeercert(binary_form=True)
        if der is None:
            return None
        expiry = _expiry_cache.get(der)
        if expiry is None:
            cert = ssl_object.getpeercert()
            if not cert or "notAfter" not in cert:
                return None
            expiry = float(ssl.cert_time_to_seconds(str(cert["notAfter"])))
            if len(_expiry_cache) >= _EXPIRY_CACHE_SIZE:
                _expiry_cache.clear()
            _expiry_cache[der] = expiry
        return expiry

    async def start_tls(
        self,
        context: ssl.SSLContext,
        server_hostname: str,
        deadline: float,
        phases: Phases | None = None,
    ) -> Stream:
        """Upgrade this (plain, established) stream to TLS in place, e.g. inside a proxy
        tunnel: the session (exporter.tlsbio) runs inside this stream, over the same plain
        transport, which keeps owning the socket. Raises TlsFailure."""
        if self._transport is None:
            raise TlsClosed("connection closed before the TLS handshake")
        plain = self._transport
        if self._error is not None:
            # Reset before the ClientHello went out: reads as a reset in the handshake.
            error = self._take_error()
            self.close()
            raise _tls_failure(error) from error
        if self._eof or plain.is_closing():
            self.close()
            raise TlsClosed("connection closed before the TLS handshake")
        self.first_data = None
        loop = self._loop
        started = loop.time()
        # One plain timer ends the wait: an asyncio.timeout context costs a cancellation
        # and its undoing on top, for a wait that has its own future to fail.
        timer: asyncio.TimerHandle | None = None
        try:
            self._tls = TlsSession(context, _sni(server_hostname))
            self._handshake = handshake = loop.create_future()
            self._step_handshake()  # the ClientHello
            if not handshake.done():
                timer = loop.call_at(deadline, self._handshake_expired, handshake)
            await handshake
        except (OSError, ssl.SSLError, TimeoutError, EOFError) as exc:
            self._handshake = None
            self.close()
            raise _tls_failure(exc) from exc
        except BaseException:
            # Cancelled (run_check's overrun cut): let go of the socket now.
            self._handshake = None
            self.close()
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if phases is not None:
                phases.add(PHASE_TLS, loop.time() - started)
        return self

    def _handshake_expired(self, handshake: asyncio.Future[None]) -> None:
        if self._handshake is handshake:
            self._end_handshake(TimeoutError())


async def open_stream(sock: socket.socket) -> Stream:
    """A plain Stream over a connected socket (the Stream's transport owns it from then on,
    also when this is cancelled: asyncio then closes the transport, and with it the socket).

    On asyncio's own selector loop the transport is made here and now: create_connection
    (sock=...) makes the same one and then spends a future and a loop turn waiting for its
    connection_made, before which a probe has nothing to do anyway (its first write goes
    straight to the socket; reading starts in the turn connection_made runs in). Other loops
    go the public way."""
    stream = Stream(sock)
    loop = asyncio.get_running_loop()
    make_transport = getattr(loop, "_make_socket_transport", None)
    if make_transport is None:
        await loop.create_connection(lambda: stream, sock=sock)
    else:
        if sock.getblocking():
            sock.setblocking(False)  # as create_connection would
        # The transport calls connection_made again a turn later: it only records the
        # transport, the same one.
        stream.connection_made(make_transport(sock, stream))
    return stream


def _sni(name: str) -> str:
    """A fully qualified name's trailing dot is not part of the name a server or a
    certificate knows (RFC 6066: no trailing dot in SNI)."""
    return name[:-1] if name.endswith(".") else name


def _tls_failure(exc: BaseException) -> TlsFailure:
    """The handshake's failure, typed where the layer knows the symptom for sure: a
    certificate that did not verify means the handshake itself completed."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CertificateInvalid(_tls_detail(exc))
    return TlsFailure(_tls_detail(exc))


def _tls_detail(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "TLS handshake got no answer in time"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ConnectionResetError) and not str(exc):
        return "connection closed during the TLS handshake"
    return classify.describe(exc)
