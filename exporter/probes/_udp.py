"""What the UDP probers (stun, quic) share: a connected socket that reports every ICMP error
it receives, and the attempt loop over a target's addresses."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from exporter import classify
from exporter.config.model import Check
from exporter.errors import ProbeFailure, UdpFailure, UdpTimeout
from exporter.probeenv import ProbeEnv
from exporter.resolve import resolve_target
from exporter.result import PHASE_RESOLVE, Result
from exporter.timeshare import address_deadline
from exporter.verdicts import Verdict

# Linux values; the socket module names them only from Python 3.12 on.
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
# Below this much time left, another address cannot get a fair try.
MIN_ADDRESS_BUDGET = 0.2
# Datagrams one attempt takes from the target before it gives up on it: a STUN answer is
# one, a QUIC handshake a handful; a peer that floods us would otherwise cost CPU (aioquic
# parses every datagram) until the deadline, delaying every other check.
MAX_DATAGRAMS = 256

_T = TypeVar("_T")
# One attempt to one address until its deadline: what it saw, or a ProbeFailure raised.
Attempt = Callable[[str, float], Awaitable[_T]]


def connected_socket(address: str, port: int) -> socket.socket:
    """A non-blocking UDP socket connected to address:port. Connected, so that only the
    target's datagrams arrive and ICMP port unreachable is reported (ECONNREFUSED); with
    IP_RECVERR, so that network and host unreachable (which Linux otherwise keeps to itself
    for UDP, as "soft" errors) are reported too: a censor's ICMP rejection is evidence."""
    infos = socket.getaddrinfo(address, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST)
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        sock.connect(sockaddr)
    except OSError:
        sock.close()
        raise
    return sock


@dataclasses.dataclass
class Answered(Generic[_T]):
    """A UDP probe that got its answer: the result so far (ok, addresses, resolve phase)
    and what the successful attempt returned."""

    result: Result
    seen: _T


async def probe_addresses(
    check: Check, env: ProbeEnv, deadline: float, attempt: Attempt[_T]
) -> Answered[_T] | Result:
    """Resolve the target and try its addresses in turn, each with an equal share of the time
    left, until one answers. When none does, the failed Result: its verdict is the failure
    that says most about the path (an answer of any kind says more than silence), its
    detail every attempt's."""
    resolution = await resolve_target(check, env, deadline)
    phases = {PHASE_RESOLVE: resolution.duration}
    if resolution.verdict is not Verdict.OK:
        return Result(resolution.verdict, detail=resolution.detail, phases=phases)
    addresses = list(resolution.addresses)
    loop = asyncio.get_running_loop()
    failures: list[ProbeFailure] = []
    for index, address in enumerate(addresses):
        if failures and deadline - loop.time() < MIN_ADDRESS_BUDGET:
            break
        until = address_deadline(deadline, len(addresses) - index)
        try:
            seen = await attempt(address, until)
        except ProbeFailure as failure:
            failures.append(failure)
            continue
        result = Result(Verdict.OK, phases=phases, addresses=addresses, address=address)
        return Answered(result, seen)
    if not failures:
        failures.append(UdpFailure("no address to send to"))
    worst = next((f for f in failures if not isinstance(f, UdpTimeout)), failures[0])
    return Result(
        classify.verdict(worst),
        detail="; ".join(f.detail for f in failures),
        phases=phases,
        addresses=addresses,
    )
