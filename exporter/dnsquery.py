"""One DNS question to one resolver over its transport (system, UDP, TCP, DoT or DoH), with
whatever came back (an answer, a time-out, an error) returned as data, never raised."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import ipaddress
import os
import socket
import ssl
import struct

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import httpx

from exporter.classify import causes, describe
from exporter.config import ResolverSpec
from exporter.dnswire import Answer, Query, read_answer
from exporter.errors import TlsFailure
from exporter.probeenv import ProbeEnv
from exporter.stream import open_stream
from exporter.timeshare import address_deadline

RESOLV_CONF = "/etc/resolv.conf"
SYSTEM_PORT = 53
# DNS Flag Day 2020's size: room for any A/AAAA answer, and never an IP fragment, which
# middleboxes drop.
EDNS_PAYLOAD = 1232
MAX_UDP_REPLY = 65535
# A DoH reply is one DNS message, at most 64 KiB; anything longer is broken or hostile.
MAX_DOH_BODY = 64 * 1024
MAX_CNAME_CHAIN = 16
DOH_CLIENT_KEY = "dnsquery:doh"
DOH_CONTENT_TYPE = "application/dns-message"
DOH_HEADERS = {
    "content-type": DOH_CONTENT_TYPE,
    "accept": DOH_CONTENT_TYPE,
    # A compressed body could grow past MAX_DOH_BODY after the size check.
    "accept-encoding": "identity",
}
_RDTYPES = {"A": dns.rdatatype.A, "AAAA": dns.rdatatype.AAAA}


class Outcome(enum.StrEnum):
    ANSWER = "answer"  # a well-formed response: see `rcode`
    TIMEOUT = "timeout"  # nothing usable arrived before the deadline
    ERROR = "error"  # unreachable, refused, a TLS or HTTP failure, or a malformed reply


@dataclasses.dataclass
class DnsReply:
    """What one query saw. `addresses` are those of the asked type at the end of the CNAME
    chain in the answer section, in the order received, without duplicates."""

    outcome: Outcome
    rcode: str = ""  # NOERROR, NXDOMAIN, SERVFAIL, ...: set with Outcome.ANSWER only
    addresses: list[str] = dataclasses.field(default_factory=list)
    detail: str = ""
    duration: float = 0.0


class _Malformed(Exception):
    """Bytes that are not a DNS response to our query."""


class _NotOurs(_Malformed):
    """A well-formed response to another query (another ID or question). Over UDP anyone
    who can guess our port can send one, so it is ignored there and the real reply awaited,
    as resolvers do; on a connection of our own it is an error."""


class _Failed(Exception):
    """A failure whose message is already the evidence, e.g. an HTTP status."""


# What the network and a hostile server can make a query raise; anything else is a bug of
# ours and must surface as one.
_TARGET_ERRORS = (
    OSError,  # includes TimeoutError and ssl.SSLError
    EOFError,  # includes asyncio.IncompleteReadError
    httpx.HTTPError,
    dns.exception.DNSException,
    _Malformed,
    _Failed,
    TlsFailure,  # DoT's handshake; its cause says how it failed
)


async def query(
    spec: ResolverSpec, name: str, rdtype: str, deadline: float, env: ProbeEnv
) -> DnsReply:
    """Ask `spec` for the `rdtype` records of `name`, giving up at `deadline` (event-loop time).
    Every call uses new sockets. Never raises for a network or server problem."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        request = Query(name, _RDTYPES.get(rdtype) or dns.rdatatype.from_text(rdtype), EDNS_PAYLOAD)
    except dns.exception.DNSException as exc:
        # Only names from the wire (a redirect's Location) get here unchecked.
        return DnsReply(Outcome.ERROR, detail=f"invalid name {name!r}: {exc}")
    async with env.dns_slot(spec):
        if spec.scheme == "system":
            reply = await _system(request, deadline, env)
        elif spec.scheme == "https":
            reply = await _doh(spec.url, request, deadline, env)
        else:
            reply = await _server(spec, request, deadline, env)
    reply.duration = loop.time() - started
    return reply


# -- transports ---------------------------------------------------------------------------------


async def _system(request: Query, deadline: float, env: ProbeEnv) -> DnsReply:
    """The nameservers of resolv.conf in turn, each with an equal share of the time left, as
    the C library does; a definite answer (NOERROR, NXDOMAIN) ends the search."""
    nameservers = _system_nameservers()
    if isinstance(nameservers, str):
        return DnsReply(Outcome.ERROR, detail=nameservers)
    best: DnsReply | None = None
    for i, nameserver in enumerate(nameservers):
        until = address_deadline(deadline, len(nameservers) - i)
        reply = await _exchange("udp", nameserver, SYSTEM_PORT, nameserver, request, until, env)
        if len(nameservers) > 1:
            reply.detail = f"nameserver {nameserver}" + (
                f": {reply.detail}" if reply.detail else ""
            )
        if reply.outcome is Outcome.ANSWER and reply.rcode in ("NOERROR", "NXDOMAIN"):
            return reply
        if best is None or _RANK[reply.outcome] > _RANK[best.outcome]:
            best = reply
    assert best is not None
    return best


_RANK = {Outcome.TIMEOUT: 0, Outcome.ERROR: 1, Outcome.ANSWER: 2}
_resolv_conf: tuple[tuple[str, int, int, int], list[str] | str] | None = None


def _system_nameservers() -> list[str] | str:
    """The nameservers of RESOLV_CONF, re-read when the file changes; a string says why
    there are none."""
    global _resolv_conf
    path = RESOLV_CONF
    try:
        stat = os.stat(path)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    key = (path, stat.st_ino, stat.st_mtime_ns, stat.st_size)
    if _resolv_conf is not None and _resolv_conf[0] == key:
        return _resolv_conf[1]
    found: list[str] | str
    try:
        servers = dns.resolver.Resolver(filename=path, configure=True).nameservers
        found = [server for server in servers if isinstance(server, str) and _is_ip(server)]
    except dns.resolver.NoResolverConfiguration:
        found = []
    if not found:
        found = f"no nameservers in {path}"
    _resolv_conf = (key, found)
    return found


async def _server(spec: ResolverSpec, request: Query, deadline: float, env: ProbeEnv) -> DnsReply:
    """udp://, tcp:// or tls://; a resolver given by name is found through the system
    resolver, and its addresses are tried in turn while they refuse."""
    if _is_ip(spec.host):
        hosts = [spec.host]
    else:
        found = await _system_addresses(spec.host, deadline, env)
        if isinstance(found, DnsReply):
            return found
        hosts = found
    reply = DnsReply(Outcome.ERROR)
    for host in hosts:
        reply = await _exchange(spec.scheme, host, spec.port, spec.host, request, deadline, env)
        if reply.outcome is not Outcome.ERROR:
            break
    return reply


async def _system_addresses(host: str, deadline: float, env: ProbeEnv) -> list[str] | DnsReply:
    for rdtype in ("A", "AAAA"):
        request = Query(host, _RDTYPES[rdtype], EDNS_PAYLOAD)
        reply = await _system(request, deadline, env)
        if reply.addresses:
            return reply.addresses
        if reply.outcome is not Outcome.ANSWER or reply.rcode != "NOERROR":
            break
    what = reply.rcode if reply.outcome is Outcome.ANSWER else reply.detail or str(reply.outcome)
    outcome = Outcome.TIMEOUT if reply.outcome is Outcome.TIMEOUT else Outcome.ERROR
    return DnsReply(outcome, detail=f"cannot resolve the resolver's name {host}: {what}")


async def _exchange(
    scheme: str,
    host: str,
    port: int,
    server_name: str,
    request: Query,
    deadline: float,
    env: ProbeEnv,
) -> DnsReply:
    """One query to one address over udp, tcp or tls."""
    wire = request.to_wire()
    try:
        if scheme == "udp":
            try:
                response = await _udp(request, host, port, wire, deadline)
            except dns.message.Truncated:
                wire = await _stream(host, port, wire, deadline)
                return _answer(
                    request, _parse(request, wire), "truncated over UDP, retried over TCP"
                )
            return _answer(request, response)
        context = env.ssl_context(True) if scheme == "tls" else None
        wire = await _stream(host, port, wire, deadline, context, server_name)
        return _answer(request, _parse(request, wire))
    except _TARGET_ERRORS as exc:
        return _failure(exc)


async def _udp(
    request: Query, host: str, port: int, wire: bytes, deadline: float
) -> dns.message.Message | Answer:
    """The first datagram that answers `request`; replies to other queries are skipped (an
    off-path injector's wrong-ID datagram must not end the query before the real one)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        # Connected, so that the kernel drops datagrams from anyone else and reports an ICMP
        # port unreachable as ECONNREFUSED instead of leaving us to time out.
        sock.connect((host, port))
        async with asyncio.timeout_at(deadline):
            await loop.sock_sendall(sock, wire)
            while True:
                reply = await loop.sock_recv(sock, MAX_UDP_REPLY)
                # Checked before parsing, as resolvers do: bytes without our ID are no reply
                # to us, garbage included, so a forger must at least guess the ID.
                if reply[:2] != wire[:2]:
                    continue
                try:
                    return _parse(request, reply, udp=True)
                except _NotOurs:
                    continue
    except ConnectionRefusedError:
        raise _Failed("unreachable: ICMP port unreachable") from None
    finally:
        sock.close()


async def _stream(
    host: str,
    port: int,
    wire: bytes,
    deadline: float,
    context: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> bytes:
    """DNS over TCP, or over TLS with `context`: one length-prefixed query and its reply,
    which the prefix bounds to 64 KiB. The exporter's own stream carries it (TLS in place,
    no close_notify exchange a hostile server could stall), and closing it lets go of the
    socket at once, whatever the deadline cut."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        async with asyncio.timeout_at(deadline):
            await loop.sock_connect(sock, (host, port))
        stream = await open_stream(sock)
    except BaseException:
        sock.close()
        raise
    try:
        if context is not None:
            await stream.start_tls(context, server_name or host, deadline)
        stream.write(struct.pack("!H", len(wire)) + wire)
        async with asyncio.timeout_at(deadline):
            (length,) = struct.unpack("!H", await stream.read_exactly(2))
            return await stream.read_exactly(length)
    finally:
        stream.close()


async def _doh(url: str, request: Query, deadline: float, env: ProbeEnv) -> DnsReply:
    """RFC 8484 POST; the certificate must be valid for the host in the URL, name or IP."""
    request.id = 0  # RFC 8484 4.1: cache-friendly, and the reply must echo it
    client = env.http_client(DOH_CLIENT_KEY, functools.partial(_doh_client, env))
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(deadline):
            async with client.stream(
                "POST",
                url,
                content=request.to_wire(),
                headers=DOH_HEADERS,
                timeout=max(deadline - loop.time(), 0.001),
            ) as response:
                body = await _doh_body(response)
        return _answer(request, _parse(request, body))
    except _TARGET_ERRORS as exc:
        return _failure(exc)


def _doh_client(env: ProbeEnv) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        trust_env=False,  # proxy variables must not skew a probe
        # httpcore sets ALPN on the context it is given: the http probes' context already
        # has exactly that, while the tls probe's and DoT's must stay without.
        verify=env.ssl_context(True, ("http/1.1",)),
        # Every run measures a new connection (see the README).
        limits=httpx.Limits(max_keepalive_connections=0),
        follow_redirects=False,
    )


async def _doh_body(response: httpx.Response) -> bytes:
    if response.status_code != 200:
        raise _Failed(f"HTTP status {response.status_code}")
    content_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != DOH_CONTENT_TYPE:
        raise _Malformed(f"content type {content_type or 'missing'!r}, not {DOH_CONTENT_TYPE}")
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_DOH_BODY:
        raise _Malformed(f"body of {length} bytes, more than {MAX_DOH_BODY}")
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > MAX_DOH_BODY:
            raise _Malformed(f"body longer than {MAX_DOH_BODY} bytes")
    return bytes(body)


# -- replies ------------------------------------------------------------------------------------


def _parse(request: Query, wire: bytes, udp: bool = False) -> dns.message.Message | Answer:
    """The response to `request` in `wire`, or _Malformed. Over UDP a truncated response to
    our query raises dns.message.Truncated, for a retry over TCP. The common replies are
    read by exporter.dnswire; dnspython reads the rest (and says what is wrong)."""
    answer = read_answer(request, wire)
    if answer is not None:
        return answer
    try:
        response = dns.message.from_wire(wire, raise_on_truncation=udp)
    except dns.message.Truncated as exc:
        partial: dns.message.Message = exc.kwargs["message"]  # exc.message() is untyped
        if request.is_response(partial):
            raise
        raise _Malformed("truncated reply that does not answer the query") from None
    except Exception as exc:
        # Hostile bytes can trip any parser error, not only dnspython's own.
        raise _Malformed(f"{len(wire)} bytes that do not parse: {exc}") from None
    if not request.is_response(response):
        if response.id != request.id:
            raise _NotOurs(f"wrong query ID {response.id}, expected {request.id}")
        raise _NotOurs("reply does not answer the question asked")
    return response


def _answer(request: Query, response: dns.message.Message | Answer, note: str = "") -> DnsReply:
    if isinstance(response, Answer):
        return DnsReply(Outcome.ANSWER, response.rcode, response.addresses, note)
    rcode = response.rcode()
    addresses = _addresses(response, request.question[0]) if rcode == dns.rcode.NOERROR else []
    return DnsReply(Outcome.ANSWER, dns.rcode.to_text(rcode), addresses, note)


def _addresses(response: dns.message.Message, question: dns.rrset.RRset) -> list[str]:
    """Addresses of the asked type at the end of the CNAME chain that starts at the question.
    A chain that loops or runs past MAX_CNAME_CHAIN is a broken answer (_Malformed), not
    a name without addresses."""
    name: dns.name.Name = question.name
    seen = {name}
    for _ in range(MAX_CNAME_CHAIN + 1):
        rrset = response.get_rrset(response.answer, name, dns.rdataclass.IN, question.rdtype)
        if rrset is not None:
            return list(dict.fromkeys(rdata.address for rdata in rrset))
        cname = response.get_rrset(response.answer, name, dns.rdataclass.IN, dns.rdatatype.CNAME)
        if cname is None:
            return []
        name = next(iter(cname)).target
        if name in seen:
            raise _Malformed(f"CNAME loop at {name}")
        seen.add(name)
    raise _Malformed(f"CNAME chain longer than {MAX_CNAME_CHAIN}")


def _failure(exc: BaseException) -> DnsReply:
    for cause in causes(exc):
        if isinstance(cause, TimeoutError | httpx.TimeoutException):
            return DnsReply(Outcome.TIMEOUT, detail="no reply in time")
        if isinstance(cause, _Malformed):
            return DnsReply(Outcome.ERROR, detail=f"malformed reply: {cause}")
        if isinstance(cause, _Failed):
            return DnsReply(Outcome.ERROR, detail=str(cause))
        if isinstance(cause, ssl.SSLCertVerificationError):
            return DnsReply(Outcome.ERROR, detail=f"TLS certificate: {cause.verify_message}")
        if isinstance(cause, ConnectionRefusedError):
            return DnsReply(Outcome.ERROR, detail="unreachable: connection refused")
        if isinstance(cause, asyncio.IncompleteReadError):
            return DnsReply(Outcome.ERROR, detail="connection closed before a complete reply")
    return DnsReply(Outcome.ERROR, detail=describe(exc))


@functools.lru_cache(maxsize=256)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
