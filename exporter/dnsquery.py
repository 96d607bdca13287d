"""One DNS question to one resolver over its transport (system, UDP, TCP, DoT or DoH), with
whatever came back (an answer, a time-out, an error) returned as data, never raised."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import ipaddress
import os
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import httpx

from exporter.classify import describe
from exporter.config import ResolverSpec
from exporter.probeenv import ProbeEnv

RESOLV_CONF = "/etc/resolv.conf"
SYSTEM_PORT = 53
# The DNS Flag Day 2020 size: large enough for every A/AAAA answer we ask for, small enough
# never to need IP fragmentation, which middleboxes drop.
EDNS_PAYLOAD = 1232
MAX_UDP_REPLY = 65535
# A DoH reply is one DNS message (at most 64 KiB); anything longer is hostile or broken.
MAX_DOH_BODY = 64 * 1024
MAX_CNAME_CHAIN = 16
DOH_CLIENT_KEY = "dnsquery:doh"
DOH_CONTENT_TYPE = "application/dns-message"
DOH_HEADERS = {
    "content-type": DOH_CONTENT_TYPE,
    "accept": DOH_CONTENT_TYPE,
    # A compressed body could expand past MAX_DOH_BODY after the size check.
    "accept-encoding": "identity",
}


class Outcome(enum.StrEnum):
    ANSWER = "answer"  # a well-formed reply: look at `rcode`
    TIMEOUT = "timeout"  # nothing usable arrived before the deadline
    ERROR = "error"  # unreachable, refused, a TLS or HTTP failure, or a malformed reply


@dataclasses.dataclass
class DnsReply:
    """What one query saw. `addresses` are those of the asked type at the end of the CNAME
    chain in the answer section, in the order received, without duplicates."""

    outcome: Outcome
    rcode: str = ""  # NOERROR, NXDOMAIN, SERVFAIL, ...: only with Outcome.ANSWER
    addresses: list[str] = dataclasses.field(default_factory=list)
    detail: str = ""
    duration: float = 0.0


class _Malformed(Exception):
    """A reply that is not a DNS response to our query."""


class _Failed(Exception):
    """A failure already described for the evidence, e.g. an HTTP status."""


async def query(
    spec: ResolverSpec, name: str, rdtype: str, deadline: float, env: ProbeEnv
) -> DnsReply:
    """Ask `spec` for the `rdtype` records of `name`, giving up at `deadline` (event-loop time).
    Never raises for a network or server problem; cancellation propagates."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    if spec.scheme == "system":
        reply = await _system(name, rdtype, deadline, env)
    else:
        reply = await _ask(spec, name, rdtype, deadline, env)
    reply.duration = loop.time() - started
    return reply


def _make_query(name: str, rdtype: str) -> dns.message.QueryMessage:
    return dns.message.make_query(
        name, _RDTYPES.get(rdtype) or dns.rdatatype.from_text(rdtype),
        use_edns=0, payload=EDNS_PAYLOAD,
    )  # fmt: skip


_RDTYPES = {"A": dns.rdatatype.A, "AAAA": dns.rdatatype.AAAA}


async def _ask(
    spec: ResolverSpec, name: str, rdtype: str, deadline: float, env: ProbeEnv
) -> DnsReply:
    """One query to a configured resolver, its exceptions turned into a reply."""
    request = _make_query(name, rdtype)
    note = ""
    try:
        if spec.scheme == "https":
            request.id = 0  # RFC 8484 4.1: cache-friendly; the reply must echo it.
            wire = await _doh(spec.url, request.to_wire(), deadline, env)
            return _interpret(request, wire, note)
        hosts = await _server_addresses(spec, deadline, env)
        if isinstance(hosts, DnsReply):
            return hosts
        return await _first_reachable(
            hosts, lambda host: _ask_at(spec.scheme, host, spec.port, spec.host, request,
                                        deadline, env),
        )  # fmt: skip
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        return _failure(exc, note)


async def _ask_at(
    scheme: str,
    host: str,
    port: int,
    server_name: str,
    request: dns.message.Message,
    deadline: float,
    env: ProbeEnv,
) -> DnsReply:
    wire = request.to_wire()
    if scheme == "udp":
        reply = _interpret(request, await _udp(host, port, wire, deadline), "")
        if reply.outcome is not Outcome.TRUNCATED_MARK:  # type: ignore[attr-defined]
            return reply
    raise NotImplementedError
