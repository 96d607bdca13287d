"""The DNS judging rules of the README as pure functions: one resolver's reply to a verdict,
a dns check's resolvers to the check's verdict, and a target resolution (A and/or AAAA)
that left no usable address to its verdict."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence

from exporter.config import IPNetwork
from exporter.dnsquery import DnsReply, Outcome
from exporter.verdicts import Verdict

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def reply_failure(reply: DnsReply) -> Verdict | None:
    """The verdict of a reply that gave no address, or None when it gave some; the first
    four steps of the judging order, shared with target resolution."""
    if reply.outcome is Outcome.TIMEOUT:
        return Verdict.DNS_TIMEOUT
    if reply.outcome is Outcome.ERROR:
        return Verdict.DNS_ERROR
    if reply.rcode == "NXDOMAIN":
        return Verdict.DNS_NXDOMAIN
    if reply.rcode != "NOERROR":
        return Verdict.DNS_ERROR
    if not reply.addresses:
        return Verdict.DNS_NODATA
    return None


def in_networks(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def judge_resolver(
    reply: DnsReply,
    bogons: Sequence[IPNetwork],
    expect_cidrs: Sequence[IPNetwork] = (),
    control: Sequence[str] | None = None,
) -> Verdict:
    """One resolver's verdict. `control` is what the control resolver returned; None judges
    the reply on its own (the control itself, or a check without comparison)."""
    failure = reply_failure(reply)
    if failure is not None:
        return failure
    addresses = [ipaddress.ip_address(a) for a in reply.addresses]
    reference = {ipaddress.ip_address(a) for a in control or ()}
    if any(a not in reference and in_networks(a, bogons) for a in addresses):
        return Verdict.DNS_BOGON
    if (
        reference
        and reference.isdisjoint(addresses)
        and not all(in_networks(a, expect_cidrs) for a in addresses)
    ):
        return Verdict.DNS_MISMATCH
    return Verdict.OK


def deciding_resolver(
    listed: Sequence[str], control: str | None, verdicts: Mapping[str, Verdict]
) -> str:
    """The resolver whose verdict is the check's: the first non-control resolver, in listed
    order, that is not ok, else the first non-control one; the control only when it is the
    sole resolver listed."""
    others = [name for name in listed if name != control]
    if not others:
        return control if control is not None else listed[0]
    return next((name for name in others if verdicts[name] is not Verdict.OK), others[0])


def resolution_failure(replies: Sequence[DnsReply], bogons_dropped: bool) -> Verdict:
    """The verdict of a target resolution without a usable address, from its A and/or AAAA
    replies: answers that were all bogons are dns_bogon, NXDOMAIN from either query is
    dns_nxdomain, dns_nodata needs every query to have returned no address, and otherwise
    the first query's failure names the verdict."""
    if bogons_dropped:
        return Verdict.DNS_BOGON
    failures = [reply_failure(reply) or Verdict.DNS_NODATA for reply in replies]
    if Verdict.DNS_NXDOMAIN in failures:
        return Verdict.DNS_NXDOMAIN
    return next((v for v in failures if v is not Verdict.DNS_NODATA), Verdict.DNS_NODATA)
