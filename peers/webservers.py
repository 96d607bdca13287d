"""Real TCP, TLS and HTTP(S) servers on loopback for the probe tests and benchmarks, each
misbehaving in one way a censor or a broken service does: resetting the ClientHello,
never answering it, filtering by SNI, serving blockpages, redirect chains, endless, slow or
cut-off bodies; an address that drops SYNs; and helpers to configure and run a check. Every
server runs in its own threads (one per connection) so that it works beside any event loop,
and stops when its context exits."""

from __future__ import annotations

import contextlib
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

    def __init__(self, handler: Handler, host: str) -> None:
        self.handler = handler
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, 0), _Dispatch)


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


@contextlib.contextmanager
def serve(handler: Handler, host: str = "127.0.0.1") -> Iterator[int]:
    """Run `handler(conn)` for every connection to a fresh port on `host`; yields the port."""
    server = _Server(handler, host)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def closed_port(host: str = "127.0.0.1") -> int:
    """A port on `host` where nothing listens (connecting is refused)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


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


def _response(status: int, body: bytes = b"", headers: tuple[str, ...] = ()) -> bytes:
    head = [f"HTTP/1.1 {status} Status{status}", f"Content-Length: {len(body)}", *headers]
    head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _read_head(sock: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk or len(data) > 65536:
            return None
        data += chunk
    return data


def _redirect(location: str, status: int = 302) -> bytes:
    return _response(status, b"moved\n", (f"Location: {location}",))


def http_handler(context: ssl.SSLContext | None = None) -> Handler:
    """An HTTP/1.1 server (HTTPS with `context`) whose paths each behave one way:

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
    /one-byte-chunks            200 chunked, a body of 1-byte chunks as fast as they go
    /endless                    200 without length, bytes forever (until the client goes)
    /endless-head               a response head that never ends
    /huge                       200 with Content-Length 1 GiB, sent until the client goes
    /slow                       200, one byte every 100 ms
    /stall                      reads the request, never answers
    /reset-mid-body             200 with Content-Length 100000, 5000 bytes, then RST
    /close                      reads the request, closes (FIN) without answering
    /reset                      reads the request, resets without answering
    """

    def handle(sock: socket.socket) -> None:
        sock.settimeout(HOLD_SECONDS)
        conn = context.wrap_socket(sock, server_side=True) if context is not None else sock
        with conn:
            head = _read_head(conn)
            if head is None:
                return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target = request_line.split(" ")[:2]
            parsed = urllib.parse.urlsplit(target)
            path, query = parsed.path, urllib.parse.parse_qs(parsed.query)
            _route(conn, method, path, query, head)

    return handle


def _route(
    conn: socket.socket,
    method: str,
    path: str,
    query: dict[str, list[str]],
    head: bytes,
) -> None:
    send = conn.sendall
    if path in ("/", "/ok"):
        # A HEAD response has the GET response's head and no body.
        send(_response(200, b"" if method == "HEAD" else b"ok\n"))
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


# -- a SOCKS5 proxy --------------------------------------------------------------------------


def socks5_handler(resolve: Callable[[str], str] | None = None) -> Handler:
    """A minimal SOCKS5 proxy (no auth, CONNECT only). It resolves domain names itself,
    through `resolve` (default: as given, for IP literals and /etc/hosts names), as a VPN
    would; it records the names it was asked for in `socks5_handler.seen`."""

    def handle(client: socket.socket) -> None:
        client.settimeout(HOLD_SECONDS)
        greeting = client.recv(262)
        if not greeting or greeting[0] != 5:
            return
        client.sendall(b"\x05\x00")
        request = client.recv(262)
        atyp = request[3]
        if atyp == 1:
            host, rest = socket.inet_ntoa(request[4:8]), request[8:]
        elif atyp == 3:
            length = request[4]
            host, rest = request[5 : 5 + length].decode(), request[5 + length :]
            seen.append(host)
            host = resolve(host) if resolve else host
        else:
            host, rest = socket.inet_ntop(socket.AF_INET6, request[4:20]), request[20:]
        port = int.from_bytes(rest[:2])
        try:
            upstream = socket.create_connection((host, port), timeout=5)
        except OSError:
            client.sendall(b"\x05\x05\x00\x01" + b"\x00" * 6)  # connection refused
            return
        client.sendall(b"\x05\x00\x00\x01" + b"\x00" * 6)
        _splice(client, upstream)

    seen: list[str] = []
    handle.seen = seen  # type: ignore[attr-defined]
    return handle


def http_connect_handler(sock: socket.socket) -> None:
    """A minimal HTTP CONNECT proxy."""
    sock.settimeout(HOLD_SECONDS)
    head = _read_head(sock)
    if head is None:
        return
    method, target = head.split(b" ")[:2]
    if method != b"CONNECT":
        sock.sendall(_response(405))
        return
    host, _, port = target.decode().rpartition(":")
    try:
        upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
    except OSError:
        sock.sendall(_response(502, b"bad gateway\n"))
        return
    sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    _splice(sock, upstream)


def _splice(a: socket.socket, b: socket.socket) -> None:
    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    b.settimeout(HOLD_SECONDS)
    other = threading.Thread(target=pump, args=(b, a), daemon=True)
    other.start()
    pump(a, b)
    other.join(HOLD_SECONDS)
    b.close()


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
