"""The way through a configured proxy to a target, over a Stream already connected to the
proxy: a SOCKS5 CONNECT (RFC 1928, no authentication; the proxy resolves names itself, as
a VPN would) or an HTTP CONNECT tunnel. A proxy that cannot reach the target is the TCP
layer's failure, as reported by the proxy: TcpRefused when it says refused."""

from __future__ import annotations

import dataclasses
import ipaddress
import urllib.parse

from exporter.errors import TcpFailure, TcpRefused
from exporter.stream import Stream

SOCKS_VERSION = 5
SOCKS_NO_AUTH = 0
SOCKS_CONNECT = 1
SOCKS_REFUSED = 5
_SOCKS_REPLIES = {
    1: "general failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}
# A CONNECT response head longer than this is not a proxy's.
MAX_CONNECT_HEAD = 16 * 1024
DEFAULT_PORTS = {"socks5": 1080, "http": 80}


@dataclasses.dataclass(frozen=True)
class Proxy:
    scheme: str  # socks5 | http
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Proxy:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        return cls(scheme, parts.hostname or "", parts.port or DEFAULT_PORTS.get(scheme, 80))

    @property
    def tunnels_plain_http(self) -> bool:
        """SOCKS carries any TCP; an HTTP proxy is sent plain-http requests to forward."""
        return self.scheme == "socks5"


async def socks5_connect(stream: Stream, host: str, port: int) -> None:
    """Ask the SOCKS5 proxy on `stream` for a connection to host:port."""
    stream.write(bytes([SOCKS_VERSION, 1, SOCKS_NO_AUTH]))
    version, method = await _read_exactly(stream, 2)
    if version != SOCKS_VERSION or method != SOCKS_NO_AUTH:
        raise TcpFailure(f"proxy: SOCKS5 greeting refused (version {version}, method {method})")
    stream.write(bytes([SOCKS_VERSION, SOCKS_CONNECT, 0]) + _socks_address(host) + _port(port))
    version, reply, _, kind = await _read_exactly(stream, 4)
    if version != SOCKS_VERSION:
        raise TcpFailure(f"proxy: not a SOCKS5 reply (version {version})")
    if reply != 0:
        text = _SOCKS_REPLIES.get(reply, f"reply {reply}")
        failure = TcpRefused if reply == SOCKS_REFUSED else TcpFailure
        raise failure(f"proxy: SOCKS5 could not connect to {host}:{port}: {text}")
    if kind == 1:
        length = 4
    elif kind == 4:
        length = 16
    elif kind == 3:
        (length,) = await _read_exactly(stream, 1)
    else:
        raise TcpFailure(f"proxy: SOCKS5 reply with address type {kind}")
    await _read_exactly(stream, length + 2)  # the bound address: not ours to judge


async def http_connect(stream: Stream, host: str, port: int) -> None:
    """Open an HTTP CONNECT tunnel to host:port through the proxy on `stream`."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    stream.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode("ascii"))
    head = b""
    while b"\r\n\r\n" not in head:
        data = await stream.read(MAX_CONNECT_HEAD)
        if not data:
            raise TcpFailure("proxy: closed the connection before answering CONNECT")
        head += data
        if len(head) > MAX_CONNECT_HEAD:
            raise TcpFailure("proxy: CONNECT response head too long")
    status_line = head.partition(b"\r\n")[0]
    if head.partition(b"\r\n\r\n")[2]:
        # The target speaks first only after our ClientHello: bytes now are the proxy's.
        raise TcpFailure("proxy: data after the CONNECT response")
    fields = status_line.decode("latin-1").split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise TcpFailure(f"proxy: not an HTTP response to CONNECT: {status_line[:80]!r}")
    if not 200 <= int(fields[1]) < 300:
        raise TcpFailure(f"proxy: CONNECT to {authority} answered {' '.join(fields[1:])}")


def _socks_address(host: str) -> bytes:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("idna")
        return bytes([3, len(name)]) + name
    return bytes([1 if address.version == 4 else 4]) + address.packed


def _port(port: int) -> bytes:
    return port.to_bytes(2, "big")


async def _read_exactly(stream: Stream, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = await stream.read(count - len(data))
        if not chunk:
            raise TcpFailure("proxy: closed the connection in the SOCKS5 handshake")
        data += chunk
    return data
