"""A small proxy standing in for a user's VPN or proxy, for the probe tests and the lab: SOCKS5
(no auth, CONNECT only) and HTTP (CONNECT tunnels, and absolute-URI requests for http://
URLs). It resolves names itself, through its zone, as a VPN would: the client need not be
able to resolve them. Serve `Proxy.socks5` or `Proxy.http` with `peers.webservers.serve`."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import threading
import urllib.parse
from collections.abc import Mapping

from peers.webservers import read_head

# How long a tunnel may sit idle, and a connection upstream may take, before the proxy gives
# up: far beyond any probe's timeout, so that the proxy is never what a probe measures.
IDLE_SECONDS = 30.0
CONNECT_SECONDS = 5.0
PIPE_CHUNK = 64 * 1024

# SOCKS5 replies (RFC 1928 section 6), each with an all-zero IPv4 bound address.
_SOCKS_OK = b"\x05\x00\x00\x01" + bytes(6)
_SOCKS_REFUSED = b"\x05\x05\x00\x01" + bytes(6)
_SOCKS_BAD_COMMAND = b"\x05\x07\x00\x01" + bytes(6)
_SOCKS_BAD_ADDRESS = b"\x05\x08\x00\x01" + bytes(6)


class Proxy:
    """One proxy's state: the zone it resolves names through (a name not in it is used as
    given: an IP literal, or a name of /etc/hosts) and the names it was asked for, in
    `seen`, so that a test can tell that the name, not an address, reached the proxy."""

    def __init__(self, zone: Mapping[str, str] | None = None) -> None:
        self.zone = dict(zone or {})
        self.seen: list[str] = []
        self._lock = threading.Lock()

    def _resolve(self, host: str) -> str:
        if not _is_address(host):
            with self._lock:
                self.seen.append(host)
        return self.zone.get(host.rstrip(".").lower(), host)

    def _connect(self, host: str, port: int) -> socket.socket:
        upstream = socket.create_connection((self._resolve(host), port), timeout=CONNECT_SECONDS)
        upstream.settimeout(IDLE_SECONDS)
        return upstream

    def socks5(self, client: socket.socket) -> None:
        client.settimeout(IDLE_SECONDS)
        version, count = _read(client, 2)
        methods = _read(client, count)
        if version != 5 or 0 not in methods:
            client.sendall(b"\x05\xff")  # no acceptable method: we speak no-auth only
            return
        client.sendall(b"\x05\x00")
        _, command, _, atyp = _read(client, 4)
        if atyp == 1:
            host = str(ipaddress.IPv4Address(_read(client, 4)))
        elif atyp == 4:
            host = str(ipaddress.IPv6Address(_read(client, 16)))
        elif atyp == 3:
            host = _read(client, _read(client, 1)[0]).decode()
        else:
            client.sendall(_SOCKS_BAD_ADDRESS)
            return
        (port,) = struct.unpack("!H", _read(client, 2))
        if command != 1:
            client.sendall(_SOCKS_BAD_COMMAND)
            return
        try:
            upstream = self._connect(host, port)
        except OSError:
            client.sendall(_SOCKS_REFUSED)
            return
        client.sendall(_SOCKS_OK)
        splice(client, upstream)

    def http(self, client: socket.socket) -> None:
        client.settimeout(IDLE_SECONDS)
        received = read_head(client)
        if received is None:
            return
        raw_head, pending = received[0].removesuffix(b"\r\n\r\n"), received[1]
        request_line, *head = raw_head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split()
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            try:
                upstream = self._connect(host.strip("[]"), int(port))
            except OSError:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                return
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            splice(client, upstream, pending)
            return
        url = urllib.parse.urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            client.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            return
        try:
            upstream = self._connect(url.hostname, url.port or 80)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            return
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        kept = "".join(f"{h}\r\n" for h in head if not h.lower().startswith("proxy-"))
        upstream.sendall(f"{method} {path} {version}\r\n{kept}\r\n".encode("latin-1"))
        splice(client, upstream, pending)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _read(sock: socket.socket, count: int) -> bytes:
    """Exactly `count` bytes; read no further, so that nothing after the request is lost."""
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("the client went away mid-request")
        data += chunk
    return data


def splice(client: socket.socket, upstream: socket.socket, pending: bytes = b"") -> None:
    """Pipe bytes both ways until each side has finished (a FIN is passed on as a FIN);
    `pending` is what the client sent that was already read past the request."""

    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(PIPE_CHUNK):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    with upstream:
        if pending:
            upstream.sendall(pending)
        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join(IDLE_SECONDS)
