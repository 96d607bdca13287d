"""HTTP/1.1 with h11 straight over a netconnect Stream: one request, its response head and
its body, for direct and proxied requests alike. httpcore would do the same with locks,
traces and models around it, which cost more CPU than the parsing itself, for a connection
that carries exactly one request.

A probe's CPU is bounded here: bodies are read in 64 KiB buffers, and a response may cost
only so many h11 events for the bytes it brings (FREE_EVENTS, then one per
BYTES_PER_EVENT), so that a peer sending a body of 1-byte chunks gets `http_error` within a
few milliseconds of work instead of pinning the event loop for its neighbours."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any

import h11

from exporter.errors import HttpFailure, PeerClosed, TooManyEvents
from exporter.stream import Stream

# Bytes asked of the stream per read, and the largest response head accepted (httpcore's).
READ_SIZE = 64 * 1024
MAX_RESPONSE_HEAD = 100 * 1024
# h11 events any response may cost, and the bytes each event past those must bring on
# average. A 1 MiB body in 8 KiB chunks costs ~130 events; one in 1-byte chunks would cost
# a million (a peer measured at 63,697 events in 4.2 s of a pinned loop).
FREE_EVENTS = 2048
BYTES_PER_EVENT = 512
# The reader hands the loop back this often even when data is always already buffered, so
# that neighbours' timers fire on time while a body is parsed.
YIELD_EVERY = 256


# h11's events are immutable: one end-of-message serves every request, and a request's
# event is kept, since validating its headers cost about as much as h11's whole send.
_END_OF_MESSAGE = h11.EndOfMessage()


@functools.lru_cache(maxsize=4096)
def _request_event(
    method: str, target: bytes, headers: tuple[tuple[bytes, bytes], ...]
) -> h11.Request:
    return h11.Request(method=method, target=target, headers=list(headers))


class Http11:
    """One request/response over `stream` (which the caller owns and closes)."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD)
        self._events = 0
        self._received = 0
        self._eof = False

    def send_request(
        self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """Queue the whole request (probes send small ones, see Stream.write)."""
        try:
            data = self._h11.send(_request_event(method, target, tuple(headers))) or b""
            if body:
                data += self._h11.send(h11.Data(data=body)) or b""
            data += self._h11.send(_END_OF_MESSAGE) or b""
        except h11.LocalProtocolError as exc:
            raise HttpFailure(f"cannot send the request: {exc}") from exc
        self._stream.write(data)

    async def response_head(self) -> h11.Response:
        """The final response head (1xx heads are skipped)."""
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Response):
                return event
            if not isinstance(event, h11.InformationalResponse):  # 100 Continue and such
                raise HttpFailure(f"unexpected {type(event).__name__} before the response")

    async def body(self) -> AsyncIterator[bytes]:
        """The body's parts as they arrive, until its end."""
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return

    async def _next_event(self) -> Any:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                if self._eof:
                    # h11 saw our end-of-stream before the message was complete.
                    raise PeerClosed(f"peer closed the connection early: {exc}") from exc
                raise HttpFailure(f"invalid response: {exc}") from exc
            if event is not h11.NEED_DATA:
                await self._count_event()
                return event
            data = await self._stream.read(READ_SIZE)
            if not data:
                if self._h11.their_state is h11.SEND_RESPONSE:
                    raise PeerClosed("server disconnected without sending a response")
                self._eof = True
            self._received += len(data)
            self._h11.receive_data(data)

    async def _count_event(self) -> None:
        self._events += 1
        if self._events > FREE_EVENTS + self._received // BYTES_PER_EVENT:
            raise TooManyEvents(
                f"response in tiny parts: {self._events} protocol events for {self._received} bytes"
            )
        if self._events % YIELD_EVERY == 0:
            await asyncio.sleep(0)
