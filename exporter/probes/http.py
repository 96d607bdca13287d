"""The http prober: the shared exchange chain (exporter.httpchain) from the check's target,
every hop's URL, Location and body matched against the blockpage patterns, and the verdict
the earliest failing layer's."""

from __future__ import annotations

from exporter.config.model import Check, HttpOptions
from exporter.httpchain import probe_chain
from exporter.probeenv import ProbeEnv
from exporter.result import Result


async def probe(check: Check, env: ProbeEnv, deadline: float) -> Result:
    options = check.options
    assert isinstance(options, HttpOptions)
    return await probe_chain(
        check, env, deadline, method=options.method, body_limit=options.max_body
    )
