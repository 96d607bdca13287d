"""DNS wire format for the common case, without dnspython's object model: the query's bytes
built directly (header, question, OPT), and a lean reader for the replies a probe sees run
after run (A, AAAA and CNAME answers, an SOA in authority, an empty OPT).

dnspython builds and parses a whole Message per query: ~20% of a dns probe's CPU in the
installed exporter (py-spy: `Message.from_wire` 15%, `make_query` 5%). The reader here
decides only replies it can read completely; anything else (another record type or class,
EDNS options, a TC bit, compression it does not follow, a name that does not match) makes
it return None and dnspython reads the reply as before. So a reply it accepts is one that
dnspython accepts too, with the same rcode and addresses, and every malformed reply is
judged by dnspython, exactly as strictly as without this module."""

from __future__ import annotations

import dataclasses
import functools
import secrets
import struct

import dns.exception
import dns.ipv4
import dns.ipv6
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

# dnspython's make_query: recursion desired, one question, one OPT record.
_FLAGS_RD = 0x0100
_HEADER = struct.Struct("!HHHHHH")
_RECORD = struct.Struct("!HHIH")  # type, class, TTL, rdata length
_QUESTION_TAIL = struct.Struct("!HH")
_QR, _OPCODE, _TC, _RCODE = 0x8000, 0x7800, 0x0200, 0x000F
_A, _CNAME, _SOA, _AAAA, _OPT = 1, 5, 6, 28, 41
_IN = 1
_ADDRESS_LENGTHS = {_A: 4, _AAAA: 16}
_ADDRESS_TEXT = {_A: dns.ipv4.inet_ntoa, _AAAA: dns.ipv6.inet_ntoa}
_SOA_NUMBERS = 20  # serial, refresh, retry, expire, minimum
_MAX_NAME = 255
# Longer chains are left to dnsquery's own CNAME rules (its limit and loop checks).
_MAX_CHAIN = 8


class _Unusual(Exception):
    """A reply this reader does not decide: dnspython reads it instead."""


@dataclasses.dataclass(slots=True)
class Answer:
    """A reply to the query, read by this module: its rcode's name and, for NOERROR, the
    addresses of the asked type at the end of the CNAME chain, in order, without
    duplicates (what dnsquery takes from dnspython's Message otherwise)."""

    rcode: str
    addresses: list[str]


class Query:
    """One question as the probes send it: the bytes dnspython's
    `make_query(name, rdtype, use_edns=0, payload=payload)` would send, with a fresh random
    ID. The parts of dnspython's Message that dnsquery uses (`to_wire`, a settable `id`,
    `is_response`, `question`) are here too; the Message behind the last two is built only
    when a reply needs dnspython to read it."""

    __slots__ = ("_message", "_wire", "name_key", "rdtype")

    def __init__(self, name: str, rdtype: int, payload: int) -> None:
        """Raises dns.exception.DNSException for a name that is not one, as make_query."""
        self.name_key, question = _question(name, rdtype, payload)
        self.rdtype = rdtype
        self._wire = _HEADER.pack(secrets.randbits(16), _FLAGS_RD, 1, 0, 0, 1) + question
        self._message: dns.message.Message | None = None

    @property
    def id(self) -> int:
        return int.from_bytes(self._wire[:2], "big")

    @id.setter
    def id(self, value: int) -> None:
        self._wire = value.to_bytes(2, "big") + self._wire[2:]
        self._message = None

    def to_wire(self) -> bytes:
        return self._wire

    @property
    def message(self) -> dns.message.Message:
        """The query as dnspython's Message, for replies that dnspython reads."""
        if self._message is None:
            self._message = dns.message.from_wire(self._wire)
        return self._message

    def is_response(self, response: dns.message.Message) -> bool:
        return self.message.is_response(response)

    @property
    def question(self) -> list[dns.rrset.RRset]:
        return self.message.question


@functools.lru_cache(maxsize=1024)
def _question(name: str, rdtype: int, payload: int) -> tuple[bytes, bytes]:
    """The name as lower-case wire bytes (the reader's key) and the message after the header:
    the question and an OPT record (EDNS version 0, no flags, no options). The same names
    come back every run; converting one costs more than the rest of the query."""
    wire_name = dns.name.from_text(name).to_wire()
    assert wire_name is not None  # an absolute name without a compression table
    opt = b"\x00" + _RECORD.pack(_OPT, payload, 0, 0)
    return wire_name.lower(), wire_name + _QUESTION_TAIL.pack(rdtype, _IN) + opt


def read_answer(query: Query, wire: bytes) -> Answer | None:
    """The reply in `wire` to `query` when this reader can decide it, else None (the caller
    then asks dnspython, which also says what is wrong with a malformed reply)."""
    if query.rdtype not in _ADDRESS_LENGTHS:
        return None
    try:
        return _read(query, wire)
    except (_Unusual, IndexError, struct.error, ValueError, dns.exception.DNSException):
        return None


def _read(query: Query, wire: bytes) -> Answer:
    size = len(wire)
    if size < _HEADER.size:
        raise _Unusual
    ident, flags, questions, answers, authority, additional = _HEADER.unpack_from(wire)
    if ident != query.id or not flags & _QR or flags & (_OPCODE | _TC) or questions != 1:
        raise _Unusual
    name, pos = _name(wire, _HEADER.size, size)
    rdtype, rdclass = _QUESTION_TAIL.unpack_from(wire, pos)
    pos += _QUESTION_TAIL.size
    if name != query.name_key or rdtype != query.rdtype or rdclass != _IN:
        raise _Unusual

    addresses: dict[bytes, list[str]] = {}  # owner -> addresses of the asked type
    cnames: dict[bytes, bytes] = {}  # owner -> target
    for _ in range(answers):
        owner, pos = _name(wire, pos, size)
        rdtype, rdclass, _ttl, length = _RECORD.unpack_from(wire, pos)
        pos += _RECORD.size
        end = pos + length
        if end > size or rdclass != _IN:
            raise _Unusual
        if rdtype in _ADDRESS_LENGTHS:
            if length != _ADDRESS_LENGTHS[rdtype]:
                raise _Unusual
            if rdtype == query.rdtype:
                text = _ADDRESS_TEXT[rdtype](wire[pos:end])
                addresses.setdefault(owner, []).append(text)
        elif rdtype == _CNAME and owner not in cnames:
            # A second CNAME for one owner (dnspython keeps the last) is left to dnspython.
            cnames[owner], after = _name(wire, pos, end)
            if after != end:
                raise _Unusual
        else:
            raise _Unusual
        pos = end
    for _ in range(authority):
        _owner, pos = _name(wire, pos, size)
        rdtype, rdclass, _ttl, length = _RECORD.unpack_from(wire, pos)
        pos += _RECORD.size
        end = pos + length
        if end > size or rdtype != _SOA or rdclass != _IN:
            raise _Unusual
        _mname, after = _name(wire, pos, end)
        _rname, after = _name(wire, after, end)
        if after + _SOA_NUMBERS != end:
            raise _Unusual
        pos = end
    for index in range(additional):
        # Only an OPT without options, named by the root label itself, once.
        if index or wire[pos] != 0:
            raise _Unusual
        rdtype, _payload, extended, length = _RECORD.unpack_from(wire, pos + 1)
        pos += 1 + _RECORD.size
        if rdtype != _OPT or length or extended >> 24:  # an extended rcode: dnspython's
            raise _Unusual
    if pos != size:
        raise _Unusual
    rcode = _rcode_text(flags & _RCODE)
    if rcode != "NOERROR":
        return Answer(rcode, [])
    return Answer(rcode, _chain(query.name_key, addresses, cnames))


def _chain(name: bytes, addresses: dict[bytes, list[str]], cnames: dict[bytes, bytes]) -> list[str]:
    seen = {name}
    for _ in range(_MAX_CHAIN):
        found = addresses.get(name)
        if found is not None:
            return list(dict.fromkeys(found))
        target = cnames.get(name)
        if target is None:
            return []
        if target in seen:
            raise _Unusual  # a loop: dnsquery's rules decide what it is
        seen.add(target)
        name = target
    raise _Unusual


def _name(wire: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """The name at `pos` (not read past `end`) as lower-case uncompressed wire bytes, and the
    position after it. Compression pointers follow dnspython's rules: each points before the
    part read last, at most MAX_COMPRESSION_POINTER_CHAIN of them."""
    parts: list[bytes] = []
    length = 1  # the root label
    start, limit = pos, end
    after = -1
    hops = 0
    while True:
        if pos >= limit:
            raise _Unusual
        count = wire[pos]
        if count == 0:
            pos += 1
            break
        if count < 64:
            stop = pos + 1 + count
            if stop > limit:
                raise _Unusual
            parts.append(wire[pos:stop])
            length += count + 1
            pos = stop
        elif count >= 192:
            if pos + 2 > limit:
                raise _Unusual
            target = (count & 0x3F) << 8 | wire[pos + 1]
            if after < 0:
                after = pos + 2
            hops += 1
            if target >= start or hops > dns.name.MAX_COMPRESSION_POINTER_CHAIN:
                raise _Unusual
            limit = start  # what the pointer leads to must end before the part read last
            pos = start = target
        else:
            raise _Unusual
    if length > _MAX_NAME:
        raise _Unusual
    return b"".join(parts).lower() + b"\x00", pos if after < 0 else after


@functools.lru_cache(maxsize=32)
def _rcode_text(value: int) -> str:
    return dns.rcode.to_text(dns.rcode.from_flags(value, 0))


__all__ = ["Answer", "Query", "read_answer"]
