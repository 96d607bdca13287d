"""kind: dns — ask every listed resolver, and the control, for the target's records at once,
judge each answer, and give the check the verdict of the first resolver that is not ok."""

from __future__ import annotations

import asyncio

from exporter.config.model import Check, DnsOptions
from exporter.dnsjudge import deciding_resolver, judge_resolver
from exporter.dnsquery import DnsReply, Outcome, query
from exporter.probeenv import ProbeEnv
from exporter.result import PHASE_RESOLVE, ResolverAnswer, Result
from exporter.verdicts import Verdict

# Addresses shown per resolver in the detail line; the full lists are in Result.resolvers.
SHOWN_ADDRESSES = 4


async def probe(check: Check, env: ProbeEnv, deadline: float) -> Result:
    options = check.options
    assert isinstance(options, DnsOptions), "a dns check carries DnsOptions"
    names = list(options.resolvers)
    control = options.control
    if control is not None and control not in names:
        names.append(control)
    specs = env.config.resolvers
    if len(names) == 1:
        replies = [await query(specs[names[0]], check.host, options.record, deadline, env)]
    else:
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(query(specs[name], check.host, options.record, deadline, env))
                for name in names
            ]
        replies = [task.result() for task in tasks]
    by_name = dict(zip(names, replies, strict=True))

    reference = by_name[control].addresses if control is not None else None
    verdicts = {
        name: judge_resolver(
            reply,
            env.config.bogons,
            options.expect_cidrs,
            None if name == control else reference,
        )
        for name, reply in by_name.items()
    }
    answers = [
        ResolverAnswer(
            resolver=name,
            verdict=verdicts[name],
            addresses=reply.addresses,
            rcode=reply.rcode,
            duration=reply.duration,
            detail=_summary(reply, verdicts[name], options.record),
            is_control=name == control,
        )
        for name, reply in by_name.items()
    ]
    decider = deciding_resolver(options.resolvers, control, verdicts)
    return Result(
        verdict=verdicts[decider],
        detail="; ".join(f"{answer.resolver}: {answer.detail}" for answer in answers),
        phases={PHASE_RESOLVE: max(reply.duration for reply in replies)},
        addresses=list(by_name[decider].addresses),
        resolvers=answers,
    )


def _summary(reply: DnsReply, verdict: Verdict, record: str) -> str:
    if reply.outcome is Outcome.TIMEOUT:
        text = "timeout"
    elif reply.outcome is Outcome.ERROR:
        text = reply.detail
    elif reply.addresses:
        shown = reply.addresses[:SHOWN_ADDRESSES]
        text = ", ".join(shown)
        if len(reply.addresses) > len(shown):
            text += f" (+{len(reply.addresses) - len(shown)} more)"
    elif reply.rcode == "NOERROR":
        text = f"NOERROR, no {record} record"
    else:
        text = reply.rcode
    if verdict is not Verdict.OK and reply.addresses:
        # Addresses that were judged (dns_bogon, dns_mismatch): say so beside them.
        text += f" ({verdict})"
    return text
