"""A real DNS server for tests: answers over UDP and TCP (same port), DNS over TLS and DNS over
HTTPS from a zone table whose entries can also misbehave — garbage, wrong IDs, truncation,
silence, slowness. It runs its own event loop in a thread, so async tests, sync tests and a
subprocess exporter can all query it.

    with DnsServer({"ok.test": records("192.0.2.1"), "gone.test": NXDOMAIN}) as server:
        server.udp_url  # udp://127.0.0.1:PORT, and tcp_url, tls_url, https_url
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import errno
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from peers import certs

TTL = 60
GARBAGE_BYTES = b"this is not a DNS message at all"
HUGE_BYTES = 65507  # the most a UDP datagram can carry
HUGE_HTTP_LIMIT = 64 * 1024 * 1024  # an "endless" DoH body still ends, should a client not
MAX_CHAIN = 16
# Where a decoy (a spoofer's reply) points, and how long before the real reply follows it.
DECOY_ADDRESS = "203.0.113.66"
DECOY_GAP = 0.05


@dataclasses.dataclass(frozen=True)
class Entry:
    """How the server answers one name. `mode`:
    answer — a normal response with `rcode`, `a`, `aaaa` (or `cname`, followed in the zone);
    garbage — bytes that are not DNS; wrong_id — a correct response with another ID;
    cut — the response cut in half; tc — over UDP an empty response with the TC bit (the full
    one over TCP); drop — no response at all; huge — 64 KiB of junk, endless over DoH."""

    a: tuple[str, ...] = ()
    aaaa: tuple[str, ...] = ()
    cname: str | None = None
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR
    mode: str = "answer"
    delay: float = 0.0  # seconds before the response goes out
    for_aaaa: Entry | None = None  # how AAAA questions are answered, where that differs
    # Sent DECOY_GAP before the response, as an off-path spoofer would: "wrong_id" (an answer
    # pointing at DECOY_ADDRESS with another ID), "wrong_question" (the right ID, an answer
    # for another name) or "garbage" (bytes that are not DNS, with another ID).
    decoy: str = ""


def records(*addresses: str) -> Entry:
    """A and AAAA records (by the address family of each)."""
    return Entry(
        a=tuple(a for a in addresses if ":" not in a),
        aaaa=tuple(a for a in addresses if ":" in a),
    )


def cname(target: str) -> Entry:
    return Entry(cname=target)


def split(a: Entry, aaaa: Entry) -> Entry:
    """`a` for A questions (and every other type), `aaaa` for AAAA questions."""
    return dataclasses.replace(a, for_aaaa=aaaa)


def slow(seconds: float, entry: Entry) -> Entry:
    return dataclasses.replace(entry, delay=seconds)


def truncated_over_udp(entry: Entry) -> Entry:
    return dataclasses.replace(entry, mode="tc")


def wrong_id(entry: Entry) -> Entry:
    return dataclasses.replace(entry, mode="wrong_id")


def after_decoy(decoy: str, entry: Entry) -> Entry:
    """`entry`'s response, DECOY_GAP after a decoy of kind `decoy` (see Entry.decoy)."""
    return dataclasses.replace(entry, decoy=decoy)


def cut(entry: Entry) -> Entry:
    return dataclasses.replace(entry, mode="cut")


NODATA = Entry()
NXDOMAIN = Entry(rcode=dns.rcode.NXDOMAIN)
SERVFAIL = Entry(rcode=dns.rcode.SERVFAIL)
REFUSED = Entry(rcode=dns.rcode.REFUSED)
GARBAGE = Entry(mode="garbage")
DROP = Entry(mode="drop")
HUGE = Entry(mode="huge")


@dataclasses.dataclass(frozen=True)
class Query:
    transport: str  # udp | tcp | tls | https
    name: str
    rdtype: str


class DnsServer:
    """Serves `zone` (name → Entry; names not in it are NXDOMAIN). UDP and TCP share one
    port; DoT and DoH get their own, with a certificate from peers.certs for `host`
    (or `cert`, a (certificate, key) pair, to test verification failures)."""

    def __init__(
        self,
        zone: Mapping[str, Entry] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        cert: tuple[str, str] | None = None,
        tls: bool = True,
    ) -> None:
        self.zone: dict[str, Entry] = {}
        for name, entry in (zone or {}).items():
            self.set(name, entry)
        self.host = host
        self.port = port
        self.tls_port = 0
        self.https_port = 0
        self.queries: list[Query] = []
        self.connections = {"tcp": 0, "tls": 0, "https": 0}  # accepted, by transport
        self._cert = cert
        self._tls = tls
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closers: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- control, from any thread ------------------------------------------------------------

    def set(self, name: str, entry: Entry) -> None:
        self.zone[_key(name)] = entry

    def queried(self, name: str) -> list[Query]:
        return [q for q in list(self.queries) if q.name == _key(name)]

    @property
    def udp_url(self) -> str:
        return f"udp://{self._netloc(self.port)}"

    @property
    def tcp_url(self) -> str:
        return f"tcp://{self._netloc(self.port)}"

    @property
    def tls_url(self) -> str:
        return f"tls://{self._netloc(self.tls_port)}"

    @property
    def https_url(self) -> str:
        return f"https://{self._netloc(self.https_port)}/dns-query"

    def _netloc(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{port}"

    def start(self) -> DnsServer:
        ready: Future[None] = Future()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start())
            except BaseException as exc:
                ready.set_exception(exc)
                return
            ready.set_result(None)
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="dnsserver", daemon=True)
        self._thread.start()
        try:
            ready.result(timeout=10)
        except BaseException:
            self._thread.join(timeout=10)
            self._loop.close()
            self._loop = self._thread = None
            raise
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the server's own loop ---------------------------------------------------------------

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        tcp_sock, udp_sock = _bind_pair(self.host, self.port)
        self.port = tcp_sock.getsockname()[1]
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), sock=udp_sock
        )
        self._closers.append(transport)
        self._closers.append(await asyncio.start_server(self._serve_tcp("tcp"), sock=tcp_sock))
        if self._tls:
            context = certs.server_context(self._cert or certs.issue(self.host, "localhost"))
            tls_server = await asyncio.start_server(
                self._serve_tcp("tls"), self.host, 0, ssl=context
            )
            self.tls_port = tls_server.sockets[0].getsockname()[1]
            https_server = await asyncio.start_server(self._serve_https, self.host, 0, ssl=context)
            self.https_port = https_server.sockets[0].getsockname()[1]
            self._closers += [tls_server, https_server]

    async def _stop(self) -> None:
        for closer in self._closers:
            closer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _track(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def respond(self, wire: bytes, transport: str) -> tuple[Entry, bytes | None]:
        """The entry for the question in `wire` and the bytes to send (None: stay silent)."""
        try:
            request = dns.message.from_wire(wire)
            question = request.question[0]
        except Exception:
            return DROP, None
        name = _key(question.name.to_text())
        self.queries.append(Query(transport, name, dns.rdatatype.to_text(question.rdtype)))
        entry = self.zone.get(name, NXDOMAIN)
        if entry.for_aaaa is not None and question.rdtype == dns.rdatatype.AAAA:
            entry = entry.for_aaaa
        if entry.mode == "drop":
            return entry, None
        # Garbage after the query's ID: the client takes it for the reply (a datagram
        # without its ID is ignored, as a resolver ignores it).
        if entry.mode == "garbage":
            return entry, wire[:2] + GARBAGE_BYTES
        if entry.mode == "huge":
            return entry, wire[:2] + b"\xff" * (HUGE_BYTES - 2)
        response = dns.message.make_response(request)
        if entry.mode == "tc" and transport == "udp":
            response.flags |= dns.flags.TC
            return entry, response.to_wire()
        response.set_rcode(entry.rcode)
        self._fill(response, question.name, question.rdtype)
        if entry.mode == "wrong_id":
            response.id = (request.id + 1) & 0xFFFF
        out = response.to_wire()
        if entry.mode == "cut":
            out = out[: len(out) // 2]
        return entry, out

    def decoy(self, entry: Entry, wire: bytes) -> bytes | None:
        """The decoy to send before the response to `wire`, if `entry` has one."""
        if not entry.decoy:
            return None
        request = dns.message.from_wire(wire)
        if entry.decoy == "garbage":
            return ((request.id + 1) & 0xFFFF).to_bytes(2, "big") + GARBAGE_BYTES
        if entry.decoy == "wrong_id":
            fake = dns.message.make_response(request)
            fake.id = (request.id + 1) & 0xFFFF
        else:
            other = dns.message.make_query("decoy.test", request.question[0].rdtype)
            other.id = request.id
            fake = dns.message.make_response(other)
        fake.answer.append(
            dns.rrset.from_text(fake.question[0].name, TTL, "IN", "A", DECOY_ADDRESS)
        )
        return fake.to_wire()

    def _fill(
        self, response: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> None:
        """The answer section a recursive resolver would give: CNAMEs followed in the zone."""
        for _ in range(MAX_CHAIN):
            entry = self.zone.get(_key(name.to_text()))
            if entry is not None and entry.for_aaaa is not None and rdtype == dns.rdatatype.AAAA:
                entry = entry.for_aaaa
            if entry is None:
                return
            if entry.cname is not None:
                target = dns.name.from_text(entry.cname)
                response.answer.append(
                    dns.rrset.from_text(name, TTL, "IN", "CNAME", target.to_text())
                )
                name = target
                continue
            values = entry.a if rdtype == dns.rdatatype.A else entry.aaaa
            if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) and values:
                response.answer.append(
                    dns.rrset.from_text_list(
                        name, TTL, "IN", dns.rdatatype.to_text(rdtype), list(values)
                    )
                )
            return

    async def _serve_tcp_connection(
        self, transport: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._track()
        self.connections[transport] += 1
        try:
            while True:
                length = int.from_bytes(await reader.readexactly(2), "big")
                wire = await reader.readexactly(length)
                entry, out = self.respond(wire, transport)
                decoy = self.decoy(entry, wire) if out is not None else None
                if decoy is not None:
                    writer.write(len(decoy).to_bytes(2, "big") + decoy)
                    await writer.drain()
                    await asyncio.sleep(DECOY_GAP)
                if entry.delay:
                    await asyncio.sleep(entry.delay)
                if out is None:
                    continue
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (OSError, EOFError, ssl.SSLError, asyncio.CancelledError):
            # CancelledError too: stop() cancels handlers, and asyncio's stream server logs
            # a handler task that ends cancelled as an error.
            pass
        finally:
            writer.transport.abort()

    def _serve_tcp(self, transport: str) -> Any:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve_tcp_connection(transport, reader, writer)

        return serve

    async def _serve_https(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Just enough HTTP/1.1 for RFC 8484: POST or GET ?dns= on /dns-query, one request
        per connection."""
        self._track()
        self.connections["https"] += 1
        try:
            request_line = (await reader.readline()).decode("latin-1").split()
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                key, _, value = line.decode("latin-1").partition(":")
                headers[key.strip().lower()] = value.strip()
            method, target = request_line[0], request_line[1]
            url = urllib.parse.urlsplit(target)
            if url.path != "/dns-query":
                await _http(writer, 404, b"not found", "text/plain")
                return
            if method == "POST":
                wire = await reader.readexactly(int(headers.get("content-length", "0")))
            elif method == "GET":
                param = urllib.parse.parse_qs(url.query).get("dns", [""])[0]
                wire = base64.urlsafe_b64decode(param + "=" * (-len(param) % 4))
            else:
                await _http(writer, 405, b"method not allowed", "text/plain")
                return
            entry, out = self.respond(wire, "https")
            if entry.delay:
                await asyncio.sleep(entry.delay)
            if out is None:
                await reader.read()  # hold the connection open, silent, until the client goes
            elif entry.mode == "huge":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/dns-message\r\n"
                             b"connection: close\r\n\r\n")  # fmt: skip
                chunk = b"\xff" * 16384
                for _ in range(HUGE_HTTP_LIMIT // len(chunk)):
                    if reader.at_eof() or writer.transport.is_closing():
                        break
                    writer.write(chunk)
                    await writer.drain()
                    # drain() does not yield once the peer has gone; this lets the loop see it.
                    await asyncio.sleep(0)
            else:
                await _http(writer, 200, out, "application/dns-message")
        except (OSError, EOFError, ssl.SSLError, IndexError, ValueError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()


async def _http(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str) -> None:
    head = (
        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
        f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + body)
    await writer.drain()
    # A graceful close, so that the client reads the whole body before the connection ends.
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await asyncio.wait_for(writer.wait_closed(), 1)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        entry, out = self.server.respond(data, "udp")
        if out is None:
            return
        decoy = self.server.decoy(entry, data)
        if decoy is not None:
            assert self.transport is not None
            self.transport.sendto(decoy, addr)
            self.server._spawn(self._later(entry.delay + DECOY_GAP, out, addr))
        elif entry.delay:
            self.server._spawn(self._later(entry.delay, out, addr))
        else:
            assert self.transport is not None
            self.transport.sendto(out, addr)

    async def _later(self, delay: float, out: bytes, addr: Any) -> None:
        await asyncio.sleep(delay)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(out, addr)


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A listening TCP socket and a UDP socket on the same port, so that a client that gets
    TC over UDP finds the same server over TCP."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((host, port))
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp.bind((host, tcp.getsockname()[1]))
        except OSError as exc:
            tcp.close()
            udp.close()
            if exc.errno != errno.EADDRINUSE or port:
                raise
            continue
        tcp.listen(128)
        tcp.setblocking(False)
        udp.setblocking(False)
        return tcp, udp
    raise OSError(errno.EADDRINUSE, "no free port for both UDP and TCP")


def _key(name: str) -> str:
    return name.rstrip(".").lower()
