"""Target resolution for every kind but dns: the addresses a probe may connect to, in order,
or the dns verdict that explains why there are none."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress

from exporter.config import Check
from exporter.dnsjudge import in_networks, reply_failure, resolution_failure
from exporter.dnsquery import DnsReply, query
from exporter.probeenv import ProbeEnv
from exporter.verdicts import Verdict

_RECORDS = {4: ("A",), 6: ("AAAA",), 0: ("A", "AAAA")}


@dataclasses.dataclass
class Resolution:
    addresses: list[str]  # usable addresses, in the order to try
    verdict: Verdict  # Verdict.OK, or the dns_* verdict when there is no usable address
    detail: str
    duration: float  # seconds spent resolving (0 for literals and address lists)


async def resolve_target(
    check: Check, env: ProbeEnv, deadline: float, host: str | None = None
) -> Resolution:
    """Addresses for `host` (default: the check's own host, which honours `address:`), through
    the check's resolver, by its ip_version (any: IPv4 first), never inside `bogons`."""
    if host is None or host == check.host:
        host = check.host
        if check.address:
            return Resolution(
                list(check.address), Verdict.OK, "addresses from the configuration", 0.0
            )
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(literal)
    except ValueError:
        pass
    else:
        return Resolution([literal], Verdict.OK, "IP literal", 0.0)

    spec = env.config.resolvers[check.resolver]
    records = _RECORDS[check.ip_version]
    loop = asyncio.get_running_loop()
    started = loop.time()
    if len(records) == 1:
        replies = [await query(spec, host, records[0], deadline, env)]
    else:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(query(spec, host, r, deadline, env)) for r in records]
        replies = [task.result() for task in tasks]
    resolution = combine(replies, records, env.config.bogons, f"{check.resolver} {host}")
    resolution.duration = loop.time() - started
    return resolution


def combine(
    replies: list[DnsReply],
    records: tuple[str, ...],
    bogons: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
    what: str,
) -> Resolution:
    """Usable addresses from the A and/or AAAA replies, in the order of the replies. A usable
    answer wins over a failed query; without one, the verdict is the DNS judge's
    (`dnsjudge.resolution_failure`)."""
    usable: list[str] = []
    dropped: list[str] = []
    for reply in replies:
        for address in reply.addresses:
            if in_networks(ipaddress.ip_address(address), bogons):
                dropped.append(address)
            elif address not in usable:
                usable.append(address)
    notes = [
        f"{record}: {_describe(reply)}"
        for record, reply in zip(records, replies, strict=True)
        if reply_failure(reply) is not None
    ]
    if dropped:
        notes.append(f"bogons dropped: {', '.join(dropped)}")
    if usable:
        detail = f"{what}: {', '.join(usable)}" + (f" ({'; '.join(notes)})" if notes else "")
        return Resolution(usable, Verdict.OK, detail, 0.0)
    verdict = resolution_failure(replies, bool(dropped))
    if dropped:
        return Resolution([], verdict, f"{what}: only bogons: {', '.join(dropped)}", 0.0)
    return Resolution([], verdict, f"{what}: {'; '.join(notes)}", 0.0)


def _describe(reply: DnsReply) -> str:
    if reply.rcode and reply.rcode != "NOERROR":
        return reply.rcode
    if reply.rcode == "NOERROR":
        return "no address"
    return reply.detail or str(reply.outcome)
