"""The DNS wire shortcut (exporter/dnswire.py): the query bytes are dnspython's, and the lean
reader decides only replies that dnspython reads the same way: same rcode, same addresses,
and nothing malformed accepted. Replies come from the test DNS server's own responder and
from dnspython-built messages, then mutated byte by byte."""

from __future__ import annotations

import random

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from exporter import dnsquery
from exporter.dnswire import Answer, Query, read_answer
from peers.dnsserver import (
    NODATA,
    NXDOMAIN,
    SERVFAIL,
    DnsServer,
    cname,
    records,
    truncated_over_udp,
    wrong_id,
)

PAYLOAD = dnsquery.EDNS_PAYLOAD
A, AAAA = dns.rdatatype.A, dns.rdatatype.AAAA


def dnspython_reading(query: Query, wire: bytes) -> tuple[str, list[str]] | None:
    """What dnsquery makes of `wire` through dnspython alone: (rcode, addresses), or None
    for anything that is not a complete answer to `query` (malformed, truncated, not ours)."""
    try:
        response = dns.message.from_wire(wire)
    except Exception:
        return None
    if response.flags & dns.flags.TC or not query.message.is_response(response):
        return None
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        return dns.rcode.to_text(rcode), []
    try:
        return "NOERROR", dnsquery._addresses(response, query.question[0])
    except dnsquery._Malformed:
        return None


def server_replies() -> list[tuple[Query, bytes]]:
    """The test server's replies to our queries, for the zone the probes are tested with."""
    zone = {
        "one.test": records("192.0.2.1"),
        "many.test": records("192.0.2.1", "192.0.2.2", "192.0.2.1", "2001:db8::1", "::1.2.3.4"),
        "alias.test": cname("hop.test"),
        "hop.test": cname("Many.Test"),
        "empty.test": NODATA,
        "broken.test": SERVFAIL,
        "loop.test": cname("loop2.test"),
        "loop2.test": cname("loop.test"),
        "tc.test": truncated_over_udp(records("192.0.2.9")),
        "other.test": wrong_id(records("192.0.2.9")),
        "gone.test": NXDOMAIN,
    }
    server = DnsServer(zone)  # its responder only: no sockets needed to build replies
    pairs = []
    for name in [*zone, "ONE.test", "missing.test"]:
        for rdtype in (A, AAAA):
            query = Query(name, rdtype, PAYLOAD)
            _, wire = server.respond(query.to_wire(), "udp")
            assert wire is not None
            pairs.append((query, wire))
    return pairs


def crafted_replies() -> list[tuple[Query, bytes]]:
    """Shapes the server does not make: an SOA in authority, no OPT, mixed-case owners,
    an A record beside a CNAME, two CNAMEs for one owner."""
    pairs = []
    query = Query("site.test", A, PAYLOAD)
    for rcode, answer, authority, edns in [
        (dns.rcode.NXDOMAIN, [], [("test.", "SOA", "ns.test. host.test. 1 2 3 4 5")], True),
        (dns.rcode.NOERROR, [("SITE.test.", "A", "192.0.2.7")], [], False),
        (
            dns.rcode.NOERROR,
            [("site.test.", "CNAME", "x.test."), ("site.test.", "A", "192.0.2.8")],
            [],
            True,
        ),
        (
            dns.rcode.NOERROR,
            [
                ("site.test.", "CNAME", "x.test."),
                ("site.test.", "CNAME", "y.test."),
                ("y.test.", "A", "192.0.2.9"),
                ("x.test.", "A", "192.0.2.10"),
            ],
            [],
            True,
        ),
    ]:
        response = dns.message.make_response(query.message)
        if not edns:
            response.use_edns(False)
        response.set_rcode(rcode)
        for section, rows in ((response.answer, answer), (response.authority, authority)):
            for owner, rdtype, text in rows:
                section.append(dns.rrset.from_text(owner, 60, "IN", rdtype, text))
        pairs.append((query, response.to_wire()))
    return pairs


def mutations(wire: bytes, rng: random.Random) -> list[bytes]:
    out = [wire[:cut] for cut in range(len(wire))] + [wire + b"\x00", wire + b"junk"]
    for _ in range(60):
        data = bytearray(wire)
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(data))
            data[position] = rng.choice([0, 0xC0, 0xC0 | rng.randrange(4), 63, 64, 255,
                                         rng.randrange(256), data[position] ^ 0x20])  # fmt: skip
        out.append(bytes(data))
    return out


def test_query_bytes_are_those_of_dnspython_make_query() -> None:
    for name in ("example.com", "Example.COM.", "a.b.c.d.test", "xn--bcher-kva.test", "é.test"):
        for rdtype in (A, AAAA, dns.rdatatype.TXT):
            query = Query(name, rdtype, PAYLOAD)
            expected = dns.message.make_query(name, rdtype, use_edns=0, payload=PAYLOAD)
            expected.id = query.id
            assert query.to_wire() == expected.to_wire()


def test_query_for_a_name_that_is_not_one_raises_like_make_query() -> None:
    for name in ("a..b", "x" * 64 + ".test", ("y" * 60 + ".") * 5):
        with pytest.raises(dns.exception.DNSException):
            dns.message.make_query(name, A)
        with pytest.raises(dns.exception.DNSException):
            Query(name, A, PAYLOAD)


def test_every_query_gets_a_fresh_random_id() -> None:
    ids = {Query("example.com", A, PAYLOAD).id for _ in range(200)}
    assert len(ids) > 190


def test_setting_the_id_rewrites_the_query_bytes() -> None:
    query = Query("example.com", A, PAYLOAD)
    query.id = 0  # what DoH does (RFC 8484 4.1)
    assert query.to_wire()[:2] == b"\x00\x00"
    assert query.message.id == 0


def test_common_replies_are_read_without_dnspython() -> None:
    """The point of the shortcut: a plain answer, a CNAME chain, NODATA, NXDOMAIN with an SOA
    and a mixed-case reply are decided here (the same as dnspython), not handed back."""
    replies = {
        (query.to_wire()[12:].split(b"\x00")[0], query.rdtype): (query, wire)
        for query, wire in server_replies()
    }
    for key, expected in [
        ((b"\x03one\x04test", A), ("NOERROR", ["192.0.2.1"])),
        ((b"\x05alias\x04test", A), ("NOERROR", ["192.0.2.1", "192.0.2.2"])),
        ((b"\x05alias\x04test", AAAA), ("NOERROR", ["2001:db8::1", "::1.2.3.4"])),
        ((b"\x05empty\x04test", A), ("NOERROR", [])),
        ((b"\x04gone\x04test", A), ("NXDOMAIN", [])),
        ((b"\x06broken\x04test", A), ("SERVFAIL", [])),
        ((b"\x03ONE\x04test", A), ("NOERROR", ["192.0.2.1"])),
    ]:
        answer = read_answer(*replies[key])
        assert answer is not None, key
        assert (answer.rcode, answer.addresses) == dnspython_reading(*replies[key])
        # The server's rrset order is its own (a set): the addresses, in dnspython's order.
        assert (answer.rcode, sorted(answer.addresses)) == (expected[0], sorted(expected[1]))
    nxdomain_with_soa, without_opt, a_beside_cname = crafted_replies()[:3]
    assert read_answer(*nxdomain_with_soa) == Answer("NXDOMAIN", [])
    assert read_answer(*without_opt) == Answer("NOERROR", ["192.0.2.7"])
    assert read_answer(*a_beside_cname) == Answer("NOERROR", ["192.0.2.8"])


def test_replies_left_to_dnspython_are_the_unusual_ones() -> None:
    by_name = {query.to_wire()[13:].split(b"\x04")[0]: (query, wire) for query, wire in
               server_replies() if query.rdtype == A}  # fmt: skip
    for unusual in (b"loop", b"tc", b"other"):
        assert read_answer(*by_name[unusual]) is None, unusual
    two_cnames = crafted_replies()[3]
    assert read_answer(*two_cnames) is None


def test_lean_reader_agrees_with_dnspython_on_every_reply_and_mutation() -> None:
    """Exactly as strict: whatever the reader decides, dnspython reads as a complete answer
    with the same rcode and addresses; a malformed or foreign reply is never decided."""
    rng = random.Random(20261201)
    decided = 0
    for query, wire in server_replies() + crafted_replies():
        for candidate in [wire, *mutations(wire, rng)]:
            answer = read_answer(query, candidate)
            if answer is None:
                continue
            decided += 1
            assert dnspython_reading(query, candidate) == (answer.rcode, answer.addresses), (
                candidate.hex()
            )
    assert decided > 100  # the comparison must have compared something


def test_compression_pointers_are_judged_as_dnspython_judges_them() -> None:
    """Pointers that point forward, at themselves, into the header, or chain: whatever the
    reader decides matches dnspython, and a pointer dnspython refuses is never accepted."""
    query = Query("ptr.test", A, PAYLOAD)
    question = query.to_wire()[12:].split(b"\x00\x00\x01\x00\x01")[0] + b"\x00\x00\x01\x00\x01"
    header = query.to_wire()[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00"
    record = b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01"
    owners = [b"\xc0\x0c", b"\xc0\x1e", b"\xc0\x1a", b"\xc0\x02", b"\x03ptr\xc0\x10"]
    owners += [b"\x03PTR\x04test\x00", b"\xc0\x00", b"\x80\x0c", b"\x03ptr\xc0\x0c"]
    for owner in owners:
        wire = header + question + owner + record
        answer = read_answer(query, wire)
        if answer is not None:
            assert dnspython_reading(query, wire) == (answer.rcode, answer.addresses)
    plain = header + question + b"\xc0\x0c" + record
    assert read_answer(query, plain) == Answer("NOERROR", ["192.0.2.1"])
