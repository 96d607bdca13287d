"""Real TCP, TLS and HTTP(S) servers for the probe tests, the lab and the benchmarks, each
misbehaving in one way a censor or a broken service does: resetting the ClientHello,
never answering it, filtering by SNI, serving blockpages, redirect chains, endless, slow or
cut-off bodies, garbage; an address that drops SYNs; and helpers to configure and run a
check. Every server runs in its own threads (one per connection) so that it works beside any
event loop, on loopback for the tests and inside a namespace for the lab."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import itertools
import os
import socket
import socketserver
import ssl
import struct
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import yaml

from exporter.config import Config, load_text
from exporter.probeenv import ProbeEnv
from exporter.probes import run_check
from exporter.result import Result
from peers import certs

Handler = Callable[[socket.socket], None]

# A blockpage marker the tests configure as a `blockpages` pattern.
BLOCKPAGE_MARKER = "blocked-by-isp.example"
BLOCKPAGE_PATTERN = r"blocked-by-isp\.example"
# How long a stalling handler holds a connection before giving up on its own.
HOLD_SECONDS = 30.0


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def hold(sock: socket.socket, seconds: float = HOLD_SECONDS) -> None:
    """Keep the connection open, reading and discarding, until the peer goes or time is up."""
    sock.settimeout(seconds)
    with contextlib.suppress(OSError):
        while sock.recv(65536):
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 1024

    def __init__(self, handler: Handler, host: str, port: int) -> None:
        self.handler = handler
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Dispatch)

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Dispatch(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        assert isinstance(self.server, _Server)
        sock = self.request
        assert isinstance(sock, socket.socket)
        with contextlib.suppress(OSError, ssl.SSLError):
            self.server.handler(sock)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            self.request.close()


def listen(handler: Handler, host: str = "127.0.0.1", port: int = 0) -> _Server:
    """Run `handler(conn)` for every connection to `host`:`port` (0: a fresh port) until the
    returned server's close(); its port is `server_address[1]`."""
    server = _Server(handler, host, port)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return server


@contextlib.contextmanager
def serve(handler: Handler, host: str = "127.0.0.1") -> Iterator[int]:
    """Run `handler(conn)` for every connection to a fresh port on `host`; yields the port."""
    server = listen(handler, host)
    try:
        yield server.server_address[1]
    finally:
        server.close()


# -- TLS -------------------------------------------------------------------------------------


def tls_handler(context: ssl.SSLContext) -> Handler:
    """Complete the handshake with `context`'s certificate, then wait for the client to go."""

    def handle(sock: socket.socket) -> None:
        sock.settimeout(HOLD_SECONDS)
        with context.wrap_socket(sock, server_side=True) as tls:
            hold(tls)

    return handle


def reset_on_hello(sock: socket.socket) -> None:
    """Accept TCP, then answer the first bytes (the ClientHello) with a RST."""
    sock.settimeout(HOLD_SECONDS)
    if sock.recv(4096):
        reset(sock)


def not_tls(sock: socket.socket) -> None:
    """Answer the ClientHello as a plain HTTP server would (not TLS at all)."""
    sock.settimeout(HOLD_SECONDS)
    if sock.recv(4096):
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        hold(sock)


def silent(sock: socket.socket) -> None:
    """Accept TCP and never answer: the handshake stalls."""
    hold(sock)


def sni_filter(blocked_name: str, context: ssl.SSLContext) -> Handler:
    """Reset a connection whose ClientHello carries `blocked_name` (a byte search, as a
    simple DPI box does); complete the handshake with any other name."""
    needle = blocked_name.encode("ascii")

    def handle(sock: socket.socket) -> None:
        sock.settimeout(HOLD_SECONDS)
        hello = b""
        # Peek until the whole first TLS record is in, without consuming it.
        while True:
            hello = sock.recv(16384, socket.MSG_PEEK)
            if not hello or (len(hello) >= 5 and len(hello) >= 5 + int.from_bytes(hello[3:5])):
                break
            time.sleep(0.001)
        if needle in hello:
            reset(sock)
            return
        tls_handler(context)(sock)

    return handle


# -- HTTP ------------------------------------------------------------------------------------

# The lab's big file is written in small pieces, so that they go out as small TLS records: a
# client whose connection freezes after 16 KB has then decrypted most of what arrived, as with
# the CDNs that the freeze hits. It never ends by itself (the client stops reading at its
# min_bytes); the bound keeps a client that never stops from streaming forever.
BIG_CHUNK = 4 * 1024
BIG_LIMIT = 64 * 1024 * 1024
# A small send buffer bounds what a /big connection has in flight, and with it the queue a
# throttled connection leaves at the lab censor's shaper when the client gives up: well under
# a second at 128 kbit/s, so that the next run's handshake is not stuck behind the last data.
BIG_SEND_BUFFER = 4 * 1024
# Requests are read up to here; a bigger head is not one we serve.
HEAD_LIMIT = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Request:
    """A request as read by `http_site`: the body has been read (and discarded) already, so
    that closing after the answer sends a FIN, not the RST that unread data would cause."""

    method: str
    target: str  # as in the request line
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    head: bytes  # the request line and headers as received
    body_bytes: int


Route = Callable[[socket.socket, Request], None]


def _response(
    status: int, body: bytes = b"", headers: tuple[str, ...] = (), reason: str = ""
) -> bytes:
    head = [f"HTTP/1.1 {status} {reason or f'Status{status}'}", f"Content-Length: {len(body)}"]
    head += [*headers, "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def read_head(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """The request head, and what arrived after it; None if the peer went or sent too much."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk or len(data) > HEAD_LIMIT:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def _read_request(conn: socket.socket) -> Request | None:
    received = read_head(conn)
    if received is None:
        return None
    head, rest = received
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target = request_line.split(" ")[:2]
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        if value:
            headers[name.strip().lower()] = value.strip()
    # Read the body through, discarding it: the upload sink, and a POST to any other path.
    left = int(headers.get("content-length", "0") or 0) - len(rest)
    while left > 0:
        piece = conn.recv(min(65536, left))
        if not piece:
            return None
        left -= len(piece)
    parsed = urllib.parse.urlsplit(target)
    return Request(
        method=method,
        target=target,
        path=parsed.path,
        query=urllib.parse.parse_qs(parsed.query),
        headers=headers,
        head=head,
        body_bytes=int(headers.get("content-length", "0") or 0),
    )


def http_site(route: Route, context: ssl.SSLContext | None = None) -> Handler:
    """An HTTP/1.1 server (HTTPS with `context`) that answers each request with `route`."""

    def handle(sock: socket.socket) -> None:
        sock.settimeout(HOLD_SECONDS)
        conn = context.wrap_socket(sock, server_side=True) if context is not None else sock
        with conn:
            request = _read_request(conn)
            if request is not None:
                route(conn, request)

    return handle


def _redirect(location: str, status: int = 302) -> bytes:
    return _response(status, b"moved\n", (f"Location: {location}",))


def http_handler(context: ssl.SSLContext | None = None) -> Handler:
    """The one test and lab site, HTTPS with `context`, whose paths each behave one way:

    /ok, /                      200 "ok"
    /echo                       200, the request head as the body
    /status/N                   status N
    /blockpage?status=N         status N (200), a body containing BLOCKPAGE_MARKER
    /gzip-blockpage             the same, gzip-compressed although identity was asked for
    /redirect?to=URL&status=N   redirect (302 by default) to URL
    /chain/N                    N redirects, then 200
    /loop                       redirects to itself forever
    /cookie-set, /cookie-check  a redirect that sets a cookie, and a page that needs it
    /no-auth                    200, or 403 when the request carries an Authorization header
    /charset?name=C             a blockpage labelled `Content-Type: text/html; charset=C`
    /upload                     reads the (POST) body, discards it, 200 "received"
    /big                        200 without length, small pieces until BIG_LIMIT (the lab's
                                media file: freezes and throttling show in a transfer)
    /one-byte-chunks            200 chunked, a body of 1-byte chunks as fast as they go
    /endless                    200 without length, bytes forever (until the client goes)
    /endless-head               a response head that never ends
    /huge                       200 with Content-Length 1 GiB, sent until the client goes
    /slow                       200, one byte every 100 ms
    /stall                      reads the request, never answers
    /reset-mid-body             200 with Content-Length 100000, 5000 bytes, then RST
    /close                      reads the request, closes (FIN) without answering
    /reset                      reads the request, resets without answering
    anything else               404
    """
    return http_site(_route, context)


def _route(conn: socket.socket, request: Request) -> None:
    send = conn.sendall
    path, query, head = request.path, request.query, request.head
    if path in ("/", "/ok"):
        # A HEAD response has the GET response's head and no body.
        send(_response(200, b"" if request.method == "HEAD" else b"ok\n"))
    elif path == "/echo":
        send(_response(200, head))
    elif path.startswith("/status/"):
        send(_response(int(path.rsplit("/", 1)[1]), b"status\n"))
    elif path == "/blockpage":
        body = f"<html>Access restricted: {BLOCKPAGE_MARKER}</html>".encode()
        send(_response(int(query.get("status", ["200"])[0]), body))
    elif path == "/gzip-blockpage":
        body = gzip.compress(f"<p>see {BLOCKPAGE_MARKER}</p>".encode())
        send(_response(200, body, ("Content-Encoding: gzip",)))
    elif path == "/redirect":
        send(_redirect(query["to"][0], int(query.get("status", ["302"])[0])))
    elif path.startswith("/chain/"):
        left = int(path.rsplit("/", 1)[1])
        send(_redirect(f"/chain/{left - 1}") if left > 0 else _response(200, b"end\n"))
    elif path == "/loop":
        send(_redirect("/loop"))
    elif path == "/cookie-set":
        send(_response(302, b"", ("Location: /cookie-check", "Set-Cookie: probe=1; Path=/")))
    elif path == "/cookie-check":
        ok = b"cookie: probe=1" in head.lower()
        send(_response(200 if ok else 403, b"cookie\n"))
    elif path == "/no-auth":
        send(_response(403 if b"\r\nauthorization:" in head.lower() else 200, b"auth\n"))
    elif path == "/charset":
        body = f"<html>Access restricted: {BLOCKPAGE_MARKER}</html>".encode()
        send(_response(200, body, (f"Content-Type: text/html; charset={query['name'][0]}",)))
    elif path == "/upload":
        send(_response(200, b"received\n", ("Content-Type: text/plain",)))
    elif path == "/big":
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BIG_SEND_BUFFER)
        send(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Connection: close\r\n\r\n"
        )
        chunk = b"\0" * BIG_CHUNK
        for _ in range(BIG_LIMIT // BIG_CHUNK):
            send(chunk)
    elif path == "/one-byte-chunks":
        send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        chunks = b"1\r\nx\r\n" * 10000
        deadline = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < deadline:
            send(chunks)
    elif path == "/endless":
        send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        _pour(conn)
    elif path == "/huge":
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\nConnection: close\r\n\r\n")
        _pour(conn)
    elif path == "/endless-head":
        send(b"HTTP/1.1 200 OK\r\n")
        deadline = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < deadline:
            send(b"X-Filler: " + b"f" * 1000 + b"\r\n")
    elif path == "/slow":
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n")
        for _ in range(1000):
            send(b"x")
            time.sleep(0.1)
    elif path == "/stall":
        hold(conn)
    elif path == "/reset-mid-body":
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n")
        send(b"x" * 5000)
        time.sleep(0.05)  # let the head and the first bytes arrive before the RST
        reset(conn)
    elif path == "/close":
        conn.shutdown(socket.SHUT_RDWR)
    elif path == "/reset":
        reset(conn)
    else:
        send(_response(404, b"not found\n"))


def _pour(conn: socket.socket) -> None:
    chunk = b"z" * 65536
    deadline = time.monotonic() + HOLD_SECONDS
    while time.monotonic() < deadline:
        conn.sendall(chunk)


# -- what a censor's box answers in a site's place -----------------------------------------


def redirect_to_blockpage(
    blockpage_host: str, page: bytes, context: ssl.SSLContext | None = None
) -> Handler:
    """An ISP's blockpage server: a request for any other site (it arrives here by a DNS lie
    or by a redirection of its packets) is redirected to `blockpage_host`, which is served
    `page`."""

    def route(conn: socket.socket, request: Request) -> None:
        host = request.headers.get("host", "").split(":")[0]
        if host == blockpage_host:
            conn.sendall(_response(200, page, ("Content-Type: text/html",), "OK"))
            return
        blocked = urllib.parse.quote(f"{host}{request.target}", safe="")
        location = f"http://{blockpage_host}/?blocked={blocked}"
        conn.sendall(_response(302, b"", (f"Location: {location}",), "Found"))

    return http_site(route, context)


def answer_every_request(status: int, body: bytes, reason: str = "") -> Handler:
    """A transparent proxy's refusal without a recognisable blockpage (451, say): the same
    answer to any request."""
    answer = _response(status, body, ("Content-Type: text/html",), reason)
    return http_site(lambda conn, _: conn.sendall(answer))


def garbage(sock: socket.socket) -> None:
    """Bytes that are not an HTTP response, after the request."""
    sock.settimeout(HOLD_SECONDS)
    if read_head(sock) is not None:
        sock.sendall(b"\x00\x01\x02 this is not HTTP at all \xff\xfe\r\n\r\n")


def counted(handler: Handler) -> tuple[Handler, list[int]]:
    """`handler`, counting connections in the returned one-element list."""
    count = [0]
    lock = threading.Lock()

    def handle(sock: socket.socket) -> None:
        with lock:
            count[0] += 1
        handler(sock)

    return handle, count


# -- dropped SYNs --------------------------------------------------------------------------


@contextlib.contextmanager
def blackhole() -> Iterator[str]:
    """An address whose SYNs are dropped: a network namespace of our own (rx-test-*), joined
    to this one by a veth pair, with an iptables DROP rule for TCP. Yields the address;
    removes the namespace (and with it the veth pair) whatever happens."""
    tag = f"{os.getpid() % 100000}{next(_blackholes)}"
    namespace, outer, inner = f"rx-test-{tag}", f"rxt{tag}a", f"rxt{tag}b"
    octet = int(tag) % 250
    near, far = f"10.213.{octet}.1", f"10.213.{octet}.2"
    steps = [
        ["ip", "netns", "add", namespace],
        ["ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", namespace],
        ["ip", "addr", "add", f"{near}/30", "dev", outer],
        ["ip", "link", "set", outer, "up"],
        ["ip", "-n", namespace, "addr", "add", f"{far}/30", "dev", inner],
        ["ip", "-n", namespace, "link", "set", inner, "up"],
        ["ip", "netns", "exec", namespace, "iptables", "-A", "INPUT", "-p", "tcp", "-j", "DROP"],
    ]
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True, timeout=10)
        yield far
    finally:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", outer], capture_output=True, timeout=10)


_blackholes = itertools.count()


# -- configurations and runs ---------------------------------------------------------------


def config(
    checks: list[dict[str, Any]],
    *,
    timeout: str = "3s",
    resolvers: dict[str, str] | None = None,
    blockpages: tuple[str, ...] = (BLOCKPAGE_PATTERN,),
    bogons: tuple[str, ...] = (),
) -> Config:
    """A configuration of `checks` in one service, trusting the tests' CA, with no bogons
    unless given (the targets are on loopback)."""
    document: dict[str, Any] = {
        "defaults": {"ca_file": certs.ca_pem_path(), "timeout": timeout},
        "bogons": list(bogons),
        "blockpages": list(blockpages),
        "services": {"svc": {"checks": checks}},
    }
    if resolvers:
        document["resolvers"] = resolvers
    return load_text(yaml.safe_dump(document))


async def probe(check: dict[str, Any], **options: Any) -> Result:
    """Run one check (a config mapping, `name` optional) once, as the scheduler would."""
    loaded = config([{"name": "check", **check}], **options)
    env = ProbeEnv(loaded)
    try:
        return await run_check(next(loaded.checks()), env)
    finally:
        await env.aclose()
