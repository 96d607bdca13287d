"""The probers: one module per check kind, each with the same signature

    async def probe(check: Check, env: ProbeEnv, deadline: float) -> Result

where `deadline` is the event-loop time by which the probe must have returned, named by its
kind's entry in the registry (exporter/kinds.py). A probe never raises for a target failure:
it returns a Result whose verdict names the failing layer; run_check is the one safety net
that turns anything else into `error`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping

# The registry imports the probe modules of this package: it is read when a check runs, by
# then it is complete whichever of the two was imported first.
from exporter import kinds, sslbuffer
from exporter.classify import describe, exporter_failure
from exporter.config.model import Check
from exporter.probeenv import ProbeEnv
from exporter.result import Result

# A probe that overruns its own deadline by this much is cut off and reported as `error`:
# its timeout is a hard bound.
OVERRUN_GRACE = 0.25

log = logging.getLogger(__name__)

# Before any probe opens a TLS connection (the scheduler, /probe and --once all come here).
sslbuffer.apply()


class _ProbersView(Mapping[str, "kinds.ProbeFn"]):
    """Kind name -> probe, read from the registry when asked (not copied at import, when
    the registry may still be loading these modules)."""

    def __getitem__(self, kind: str) -> kinds.ProbeFn:
        return kinds.REGISTRY[kind].probe

    def __iter__(self) -> Iterator[str]:
        return iter(kinds.REGISTRY)

    def __len__(self) -> int:
        return len(kinds.REGISTRY)


PROBERS: Mapping[str, kinds.ProbeFn] = _ProbersView()


async def run_check(check: Check, env: ProbeEnv) -> Result:
    """Run one check within its timeout; whatever happens, return a Result."""
    loop = asyncio.get_running_loop()
    started_wall, started = time.time(), loop.time()
    deadline = started + check.timeout
    try:
        async with asyncio.timeout_at(deadline + OVERRUN_GRACE):
            result = await PROBERS[check.kind](check, env, deadline)
    except TimeoutError:
        result = Result(exporter_failure(), detail="probe overran its timeout and was cut off")
        log.error("probe overran its timeout service=%s check=%s", check.service, check.name)
    except Exception as exc:
        # A bug in the exporter, not a target failure: say so, with the detail in the log.
        log.exception("probe failed service=%s check=%s", check.service, check.name)
        result = Result(exporter_failure(exc), detail=f"internal error: {describe(exc)}")
    result.started = started_wall
    result.duration = loop.time() - started
    result.finished = time.time()
    return result
