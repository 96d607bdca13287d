"""The http prober: the shared exchange chain (exporter.httpchain) from the check's target,
every hop's URL, Location and body matched against the blockpage patterns, and the verdict
the earliest failing layer's."""

from __future__ import annotations

from exporter import classify
from exporter.config import Check, HttpOptions
from exporter.errors import ProbeFailure
from exporter.httpchain import follow_chain
from exporter.probeenv import ProbeEnv
from exporter.result import Phases, Result
from exporter.verdicts import Verdict


async def probe(check: Check, env: ProbeEnv, deadline: float) -> Result:
    options = check.options
    assert isinstance(options, HttpOptions)
    phases = Phases()
    result = Result(Verdict.OK, phases=phases.durations)
    try:
        await follow_chain(
            check,
            env,
            deadline,
            result,
            phases,
            method=options.method,
            follow_redirects=options.follow_redirects,
            expect_status=options.expect_status,
            body_limit=options.max_body,
        )
    except ProbeFailure as failure:
        result.verdict, result.detail = classify.verdict(failure), failure.detail
    return result
