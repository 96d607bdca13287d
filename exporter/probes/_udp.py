"""What the UDP probers (stun, quic) share: a connected socket that reports every ICMP error
it receives, and how the timeout is shared among a target's addresses."""

from __future__ import annotations

import asyncio
import socket

# Linux values; the socket module names them only from Python 3.12 on.
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
# Below this much time left, another address cannot get a fair try.
MIN_ADDRESS_BUDGET = 0.2


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


def address_deadline(deadline: float, addresses_left: int) -> float:
    """The deadline for the next of `addresses_left` addresses: an equal share of the time
    left, so that one silent address does not take the whole timeout from the others."""
    now = asyncio.get_running_loop().time()
    return now + max(deadline - now, 0.0) / max(addresses_left, 1)
