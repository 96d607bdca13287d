"""The probers: one module per check kind, each with the same signature

    async def probe(check: Check, env: ProbeEnv, deadline: float) -> Result

where `deadline` is the event-loop time by which the probe must have returned, and a
PROBERS entry for its kind. A probe never raises for a target failure: it returns a Result
whose verdict names the failing layer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from exporter.classify import describe, exporter_failure
from exporter.config import Check
from exporter.probeenv import ProbeEnv
from exporter.probes import dns, http, quic, stun, tcp, tls, transfer
from exporter.result import Result

ProbeFn = Callable[[Check, ProbeEnv, float], Awaitable[Result]]

# A probe that overruns its own deadline by this much is cut off and reported as `error`:
# its timeout is a hard bound.
OVERRUN_GRACE = 0.25

log = logging.getLogger(__name__)


PROBERS: dict[str, ProbeFn] = {
    "dns": dns.probe,
    "tcp": tcp.probe,
    "tls": tls.probe,
    "http": http.probe,
    "transfer": transfer.probe,
    "stun": stun.probe,
    "quic": quic.probe,
}


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
