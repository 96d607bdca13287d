"""One HTTP/1.1 client connection, served on the event loop. h11 parses; every wait has a
deadline; a request runs only once its whole head and body have arrived, so a client that
hangs up mid-request has asked for nothing (not even POST /-/reload)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from typing import Protocol

import h11

from exporter import __version__
from exporter.webconfig import WebConfig
from exporter.webserver.reply import Pieces, Reply, Request

# The whole head of a request must arrive within this much of its first byte (of the
# accept, for a connection's first request, TLS handshake included): a client that drips
# its head is cut off here however steadily it drips.
HEAD_DEADLINE = 10.0
# Between requests on a kept-alive connection; Prometheus scrapes at most every few minutes
# and reconnects at no cost when we close first.
IDLE_DEADLINE = 60.0
# A client that does not read its response within this long is dropped.
WRITE_DEADLINE = 30.0
# Longer heads get 431: Prometheus sends about 300 bytes, browsers about 1 KiB.
MAX_HEAD = 16 * 1024
# A request body (only POST /-/reload accepts one, and ignores it) is read and dropped up to
# this size, so the next request starts where it should; a larger one gets 413 and a close.
MAX_BODY = 64 * 1024
READ_CHUNK = 64 * 1024
# A body given in pieces (/metrics) goes out in joined batches of about this size, each
# waiting for the transport to drain: what is in flight stays this small, however large the
# body, and the loop turns between batches once they have held it this long (a batch takes
# ~0.2 ms to join and write).
MAX_LOOP_HOLD = 0.010
WRITE_BATCH = 256 * 1024
# Response headers a web configuration may not override: the server owns the framing.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "content-encoding"})
SERVER = f"reachability-exporter/{__version__}"

log = logging.getLogger(__name__)


class _Closed(Exception):
    """The client went away, broke the protocol, or missed a deadline: nothing to answer."""


class ConnectionHost(Protocol):
    """What a connection needs from its server."""

    web_config: Callable[[], WebConfig]
    auth_pool: concurrent.futures.Executor

    def waiting(self, connection: Connection) -> None: ...
    def working(self, connection: Connection) -> None: ...
    def closed(self, connection: Connection, task: asyncio.Task[None] | None) -> None: ...
    async def handle(self, request: Request) -> Reply: ...


class Connection:
    def __init__(self, host: ConnectionHost, sock: socket.socket, tls: ssl.SSLContext | None):
        self._host = host
        self._sock = sock
        self._tls = tls
        self.accepted = time.monotonic()
        # The server's accept-loop turn in which it was accepted.
        self.turn = 0
        # Completed requests: eviction spares clients that have been served before.
        self.served = 0
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        # What arrived before the first request head was complete.
        self._early = bytearray()
        self._deadline: asyncio.TimerHandle | None = None
        self._head_arrived = False

    def start(self) -> None:
        """Serve the connection. A plain one is first only watched until its first request
        head is complete, by a reader callback and a timer: a client that never finishes
        its request costs a descriptor and no task, and is closed at once when evicted."""
        self._host.waiting(self)
        if self._tls is not None:
            self._start_task()
            return
        loop = asyncio.get_running_loop()
        loop.add_reader(self._sock.fileno(), self._read_early)
        self._deadline = loop.call_later(HEAD_DEADLINE, self.close)

    def _read_early(self) -> None:
        try:
            data = self._sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()  # hung up before a whole head: nothing was asked
            return
        self._early += data
        if b"\r\n\r\n" in self._early or len(self._early) > MAX_HEAD:
            self._stop_watching()
            # A whole head: no longer a candidate for eviction while its task starts.
            self._head_arrived = True
            self._host.working(self)
            self._start_task()

    def _stop_watching(self) -> None:
        asyncio.get_running_loop().remove_reader(self._sock.fileno())
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _start_task(self) -> None:
        self._task = asyncio.create_task(self.serve())
        self._task.add_done_callback(lambda task: self._host.closed(self, task))

    def close(self) -> None:
        """Close now: evicted, or out of time for the first head."""
        if self._task is not None:
            self._task.cancel()
            return
        self._stop_watching()
        self._sock.close()
        self._host.closed(self, None)

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_CHUNK, loop=loop)
        transport: asyncio.BaseTransport | None = None
        if self._early:
            self._h11.receive_data(bytes(self._early))
            self._early.clear()
        try:
            try:
                async with asyncio.timeout(HEAD_DEADLINE):
                    transport, protocol = await loop.connect_accepted_socket(
                        lambda: asyncio.StreamReaderProtocol(reader),
                        self._sock,
                        ssl=self._tls,
                        ssl_handshake_timeout=HEAD_DEADLINE if self._tls else None,
                    )
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                # A port scanner, or a plain-HTTP client on a TLS port: not worth more.
                log.debug("web connection failed before a request: %s", exc)
                return
            assert isinstance(transport, asyncio.Transport)
            self._transport = transport
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            with contextlib.suppress(_Closed):
                await self._requests(loop, reader, writer)
                # Done: let the last response leave before the close (abort would drop it).
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                    async with asyncio.timeout(WRITE_DEADLINE):
                        await writer.wait_closed()
        finally:
            # Anything else (evicted, a deadline, a broken client): drop it at once.
            if isinstance(transport, asyncio.Transport):
                transport.abort()
            else:
                self._sock.close()

    async def _requests(
        self,
        loop: asyncio.AbstractEventLoop,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        head_deadline = loop.time() + HEAD_DEADLINE - (time.monotonic() - self.accepted)
        while True:
            if self.served or not self._head_arrived:
                self._host.waiting(self)
            request = await self._read_request(loop, reader, head_deadline)
            self._host.working(self)
            reply = await self._answer(request)
            await self._write(writer, request.method, reply)
            self.served += 1
            if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
                return
            self._h11.start_next_cycle()
            head_deadline = 0.0  # from the next request's first byte

    async def _read_request(
        self, loop: asyncio.AbstractEventLoop, reader: asyncio.StreamReader, head_deadline: float
    ) -> Request:
        """The next complete request (head and body); raises _Closed when there is none."""
        deadline = head_deadline or loop.time() + IDLE_DEADLINE
        started = bool(head_deadline)
        request: h11.Request | None = None
        body = 0
        ended = False
        try:
            async with asyncio.timeout_at(deadline) as timer:
                while True:
                    event = self._h11.next_event()
                    if event is h11.NEED_DATA:
                        data = await reader.read(READ_CHUNK)
                        ended = not data
                        if data and not started:
                            started = True
                            timer.reschedule(loop.time() + HEAD_DEADLINE)
                        self._h11.receive_data(data)
                    elif isinstance(event, h11.Request):
                        request = event
                        if _declared_length(event) > MAX_BODY:
                            await self._refuse(413, "Content Too Large")
                    elif isinstance(event, h11.Data):
                        body += len(event.data)
                        if body > MAX_BODY:
                            await self._refuse(413, "Content Too Large")
                    elif isinstance(event, h11.EndOfMessage) and request is not None:
                        return _request(request)
                    elif isinstance(event, h11.ConnectionClosed | h11.PAUSED):
                        raise _Closed
        except TimeoutError:
            log.debug("web request head not complete in time: closed")
            raise _Closed from None
        except h11.RemoteProtocolError as exc:
            if not ended and self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                # A head that is too long or malformed; EOF mid-request needs no answer.
                status = exc.error_status_hint  # h11: 431 for a head too long
                await self._refuse(status, HTTPStatus(status).phrase)
            raise _Closed from None
        except (OSError, ssl.SSLError):
            raise _Closed from None

    async def _refuse(self, status: int, text: str) -> None:
        """Answer a request that cannot be served, then close."""
        raw = f"HTTP/1.1 {status} {text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        with contextlib.suppress(OSError, RuntimeError):
            transport = self._transport
            if transport is not None:
                transport.write(raw.encode())
        raise _Closed

    async def _answer(self, request: Request) -> Reply:
        config = self._host.web_config()
        loop = asyncio.get_running_loop()
        header = request.headers.get("authorization")
        if header is None:
            # Nothing to hash: answered at once (Prometheus without auth sends no header).
            # A thread hop per request would queue behind the GIL under a flood.
            allowed = config.authorized(None)
        else:
            # bcrypt takes tens of milliseconds by design: never on the loop of the probes.
            allowed = await loop.run_in_executor(self._host.auth_pool, config.authorized, header)
        if not allowed:
            return Reply.text(401, "Unauthorized\n", ("WWW-Authenticate", 'Basic realm="exporter"'))
        return await self._host.handle(request)

    async def _write(self, writer: asyncio.StreamWriter, method: str, reply: Reply) -> None:
        headers = {"content-type": ("Content-Type", reply.content_type)}
        for name, value in self._host.web_config().headers.items():
            if name.lower() not in _FRAMING:
                headers[name.lower()] = (name, value)
        for name, value in reply.headers:
            headers[name.lower()] = (name, value)
        body = reply.body
        length = body.length if isinstance(body, Pieces) else len(body)
        headers["content-length"] = ("Content-Length", str(length))
        headers["server"] = ("Server", SERVER)
        try:
            response = h11.Response(status_code=reply.status, headers=list(headers.values()))
            async with asyncio.timeout(WRITE_DEADLINE):
                head = self._h11.send(response) or b""
                if method == "HEAD" or not length:
                    writer.write(head)
                elif isinstance(body, Pieces):
                    writer.write(head)
                    turned = time.monotonic()
                    for batch in body.batches(WRITE_BATCH):
                        self._send_data(writer, batch)
                        await writer.drain()
                        # drain() returns without yielding while the kernel takes all we
                        # write (a client that reads fast), and the probes would wait for
                        # the whole 40 MB of 10,000 checks (50 ms). A turn after every
                        # batch made that scrape 40-50 ms slower, one every 5 ms 15 ms.
                        if time.monotonic() - turned > MAX_LOOP_HOLD:
                            await asyncio.sleep(0)
                            turned = time.monotonic()
                else:
                    # One write, not writelines: asyncio 3.11 joins a list into a new copy.
                    writer.write(head)
                    self._send_data(writer, body)
                writer.write(self._h11.send(h11.EndOfMessage()) or b"")
                await writer.drain()
        except h11.LocalProtocolError as exc:
            log.error("cannot send a response (check the web configuration's headers): %s", exc)
            raise _Closed from None
        except (OSError, TimeoutError, ssl.SSLError):
            raise _Closed from None

    def _send_data(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        # Passthrough: the data goes out as it is (h11 only counts it against the length).
        for part in self._h11.send_with_data_passthrough(h11.Data(data=data)) or []:
            writer.write(part)


def _declared_length(event: h11.Request) -> int:
    for name, value in event.headers:
        if name == b"content-length":
            return int(value)  # h11 accepts digits only
    return 0


def _request(event: h11.Request) -> Request:
    target = event.target.decode("latin-1")
    url = urllib.parse.urlsplit(target)
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers}
    return Request(
        method=event.method.decode("ascii", "replace"),
        path=url.path,
        query=urllib.parse.parse_qs(url.query),
        headers=headers,
    )
