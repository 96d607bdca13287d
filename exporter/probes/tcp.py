"""The tcp prober: resolve the target and open a TCP connection to its addresses in turn,
telling a dropped SYN (tcp_timeout) from a refusal (tcp_refused) and other failures."""

from __future__ import annotations

from exporter import classify
from exporter.config.model import Check
from exporter.errors import ProbeFailure, TcpFailure
from exporter.netconnect import TcpConnection, open_tcp, resolve
from exporter.probeenv import ProbeEnv
from exporter.result import Phases, Result
from exporter.verdicts import Verdict


async def probe(check: Check, env: ProbeEnv, deadline: float) -> Result:
    phases = Phases()
    result = Result(Verdict.OK, phases=phases.durations)
    connection = await connect(check, env, deadline, phases, result)
    if connection is not None:
        connection.close()
    return result


async def connect(
    check: Check, env: ProbeEnv, deadline: float, phases: Phases, result: Result
) -> TcpConnection | None:
    """Resolve and connect, recording addresses and phases in `result`: the connection, or
    None with the failing layer's verdict in `result` (the first steps of tls as well)."""
    try:
        result.addresses = await resolve(check, env, deadline, phases)
        connection = await open_tcp(result.addresses, check.port, deadline, phases)
    except ProbeFailure as failure:
        result.verdict, result.detail = classify.verdict(failure), failure.detail
        if isinstance(failure, TcpFailure):
            result.addresses = failure.tried
        return None
    result.address = connection.address
    result.addresses = connection.tried
    return connection
