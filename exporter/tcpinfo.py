"""What the kernel knows about one TCP connection (TCP_INFO): how many bytes the peer has
acknowledged and how many segments went each way. An upload is judged by the peer's
acknowledgements, not by what we handed to the socket, and the segment counts tell a
cut-off after N packets from one after N bytes."""

from __future__ import annotations

import dataclasses
import socket
import struct
from typing import Any

# The head of struct tcp_info (/usr/include/linux/tcp.h), up to tcpi_data_segs_out: 8 u8
# fields (two of them bitfields), 24 u32 (tcpi_rto .. tcpi_total_retrans), 4 u64
# (pacing rates, tcpi_bytes_acked, tcpi_bytes_received), then 6 u32 (tcpi_segs_out,
# tcpi_segs_in, tcpi_notsent_bytes, tcpi_min_rtt, tcpi_data_segs_in, tcpi_data_segs_out).
# Kernels since 4.6 fill all of it; the layout only ever grows at the end.
_LAYOUT = struct.Struct("=8B24I4Q6I")
_UNACKED, _RTT = 8 + 4, 8 + 15
_BYTES_ACKED, _BYTES_RECEIVED = 8 + 24 + 2, 8 + 24 + 3
_SEGS_OUT, _SEGS_IN, _NOTSENT = 8 + 24 + 4, 8 + 24 + 5, 8 + 24 + 6


@dataclasses.dataclass(frozen=True)
class TcpInfo:
    bytes_acked: int  # payload bytes the peer acknowledged
    bytes_received: int  # payload bytes received
    segments_out: int  # segments sent, retransmissions and pure ACKs included
    segments_in: int  # segments received
    unacked: int  # segments in flight, not yet acknowledged
    notsent: int  # bytes in the send queue not yet sent
    rtt: float  # smoothed round-trip time, seconds


def read(sock: Any) -> TcpInfo | None:
    """TCP_INFO of a connected socket (a socket.socket or asyncio's TransportSocket), or None
    where the platform or the socket has none (a closed socket, not Linux)."""
    option = getattr(socket, "TCP_INFO", None)
    if sock is None or option is None:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, option, _LAYOUT.size)
    except (OSError, ValueError):
        return None
    if len(raw) < _LAYOUT.size:
        return None
    fields = _LAYOUT.unpack(raw)
    return TcpInfo(
        bytes_acked=fields[_BYTES_ACKED],
        bytes_received=fields[_BYTES_RECEIVED],
        segments_out=fields[_SEGS_OUT],
        segments_in=fields[_SEGS_IN],
        unacked=fields[_UNACKED],
        notsent=fields[_NOTSENT],
        rtt=fields[_RTT] / 1e6,
    )
