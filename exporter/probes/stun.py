"""The stun prober: an RFC 5389 Binding Request over UDP, retransmitted inside the timeout,
whose answer proves that UDP to the target gets through (what calls and voice need)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import struct

from exporter.classify import describe
from exporter.config.model import Check
from exporter.errors import UdpFailure, UdpTimeout
from exporter.probeenv import ProbeEnv
from exporter.probes._udp import MAX_DATAGRAMS, connected_socket, probe_addresses
from exporter.result import PHASE_FIRST_BYTE, Result

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111
ATTR_MAPPED_ADDRESS = 0x0001
ATTR_ERROR_CODE = 0x0009
ATTR_XOR_MAPPED_ADDRESS = 0x0020
HEADER = struct.Struct("!HHI12s")
# RFC 5389 section 7.2.1: the first retransmission after 500 ms, each later one after twice
# the previous wait. The deadline caps the series, so a 10 s timeout sends about five.
INITIAL_RTO = 0.5


class StunError(Exception):
    """An answer that is not a valid Binding Success Response to our request."""


@dataclasses.dataclass(frozen=True)
class BindingSuccess:
    mapped: str | None  # "ip:port" as the server saw us, if it said


def binding_request(transaction_id: bytes) -> bytes:
    """A Binding Request without attributes: the smallest message every server answers."""
    return HEADER.pack(BINDING_REQUEST, 0, MAGIC_COOKIE, transaction_id)


def parse_response(data: bytes, transaction_id: bytes) -> BindingSuccess:
    """Validate a response to `transaction_id`; raise StunError naming what is wrong."""
    if len(data) < HEADER.size:
        raise StunError(f"short message ({len(data)} bytes)")
    msg_type, length, cookie, txid = HEADER.unpack_from(data)
    if msg_type & 0xC000 or cookie != MAGIC_COOKIE:
        raise StunError(f"not a STUN message (type {msg_type:#06x}, cookie {cookie:#010x})")
    if txid != transaction_id:
        raise StunError("transaction ID does not match the request")
    if length % 4 or HEADER.size + length != len(data):
        raise StunError(f"length field {length} does not match {len(data) - HEADER.size} bytes")
    attributes = _attributes(data[HEADER.size :])
    if msg_type == BINDING_ERROR:
        raise StunError(f"Binding Error Response {_error_code(attributes)}")
    if msg_type != BINDING_SUCCESS:
        raise StunError(f"unexpected message type {msg_type:#06x}")
    if ATTR_XOR_MAPPED_ADDRESS in attributes:
        mapped = _address(attributes[ATTR_XOR_MAPPED_ADDRESS], txid, xor=True)
    elif ATTR_MAPPED_ADDRESS in attributes:  # RFC 3489 servers
        mapped = _address(attributes[ATTR_MAPPED_ADDRESS], txid, xor=False)
    else:
        mapped = None
    return BindingSuccess(mapped)


def _attributes(body: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    offset = 0
    while offset < len(body):
        if offset + 4 > len(body):
            raise StunError("truncated attribute header")
        kind, length = struct.unpack_from("!HH", body, offset)
        start = offset + 4
        if start + length > len(body):
            raise StunError(f"attribute {kind:#06x} overruns the message")
        out.setdefault(kind, body[start : start + length])
        offset = start + length + (-length % 4)
    return out


def _address(value: bytes, txid: bytes, *, xor: bool) -> str:
    if len(value) < 4:
        raise StunError("truncated address attribute")
    family, port = value[1], int.from_bytes(value[2:4], "big")
    raw = value[4:]
    if family == 0x01 and len(raw) == 4:
        key = MAGIC_COOKIE.to_bytes(4, "big")
    elif family == 0x02 and len(raw) == 16:
        key = MAGIC_COOKIE.to_bytes(4, "big") + txid
    else:
        raise StunError(f"bad address family {family} with {len(raw)} address bytes")
    if xor:
        port ^= MAGIC_COOKIE >> 16
        raw = bytes(a ^ b for a, b in zip(raw, key, strict=True))
    ip = ipaddress.ip_address(raw)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def _error_code(attributes: dict[int, bytes]) -> str:
    value = attributes.get(ATTR_ERROR_CODE)
    if value is None or len(value) < 4:
        return "without an error code"
    code = (value[2] & 0x07) * 100 + value[3]
    reason = value[4:].decode("utf-8", "replace").strip()
    return f"{code} {reason}".strip()


class _Client(asyncio.DatagramProtocol):
    """Delivers the first datagram for our transaction, or the first socket error (an ICMP
    error, see connected_socket)."""

    def __init__(self, transaction_id: bytes) -> None:
        self.transaction_id = transaction_id
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.ignored = 0

    def datagram_received(self, data: bytes, addr: object) -> None:
        if self.answer.done():
            return
        # Another transaction's message is not ours to judge (RFC 5389 7.3: discard it);
        # anything else from the target is its answer, judged by parse_response.
        if (
            len(data) >= HEADER.size
            and data[4:8] == MAGIC_COOKIE.to_bytes(4, "big")
            and data[8:20] != self.transaction_id
        ):
            self.ignored += 1
            if self.ignored > MAX_DATAGRAMS:
                self.answer.set_exception(
                    UdpFailure(f"flooded: {self.ignored} messages for other transactions")
                )
            return
        self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc or ConnectionError("socket closed"))


@dataclasses.dataclass
class _Binding:
    detail: str
    first_byte: float
    rtt: float


async def _bind_once(address: str, port: int, deadline: float) -> _Binding:
    loop = asyncio.get_running_loop()
    transaction_id = os.urandom(12)
    request = binding_request(transaction_id)
    try:
        transport, client = await loop.create_datagram_endpoint(
            lambda: _Client(transaction_id), sock=connected_socket(address, port)
        )
    except OSError as exc:
        raise UdpFailure(f"{address}: cannot send: {describe(exc)}") from exc
    try:
        first_sent = last_sent = loop.time()
        wait, sends = INITIAL_RTO, 0
        while True:
            transport.sendto(request)
            sends += 1
            last_sent = loop.time()
            timer = min(last_sent + wait, deadline)
            try:
                async with asyncio.timeout_at(timer):
                    data = await asyncio.shield(client.answer)
                break
            except TimeoutError:
                if timer >= deadline:
                    ignored = (
                        f" ({client.ignored} for other transactions)" if client.ignored else ""
                    )
                    raise UdpTimeout(
                        f"{address}:{port}: no answer to {sends} binding requests{ignored}"
                    ) from None
                wait *= 2
    except OSError as exc:
        # ECONNREFUSED is ICMP port unreachable; EHOSTUNREACH, ENETUNREACH the others.
        raise UdpFailure(f"{address}:{port}: {describe(exc)}") from exc
    finally:
        transport.close()
        # connection_lost comes later and would leave an exception nobody retrieves.
        client.answer.cancel()
    now = loop.time()
    try:
        success = parse_response(data, transaction_id)
    except StunError as exc:
        raise UdpFailure(f"{address}:{port}: invalid answer: {exc}") from exc
    # With retransmissions the answer may belong to any of them (Karn): the time since the
    # last one is the lower bound, and the honest figure to report.
    rtt = now - (first_sent if sends == 1 else last_sent)
    mapped = f"mapped address {success.mapped}" if success.mapped else "no mapped address"
    detail = f"{address}:{port}: binding success, {mapped}, {sends} request(s)"
    return _Binding(detail, first_byte=now - first_sent, rtt=rtt)


async def probe(check: Check, env: ProbeEnv, deadline: float) -> Result:
    answered = await probe_addresses(
        check, env, deadline, lambda address, until: _bind_once(address, check.port, until)
    )
    if isinstance(answered, Result):
        return answered
    result, binding = answered.result, answered.seen
    result.phases[PHASE_FIRST_BYTE] = binding.first_byte
    result.detail, result.rtt = binding.detail, binding.rtt
    return result
