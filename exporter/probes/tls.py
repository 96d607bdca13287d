"""The tls prober: TCP, then a TLS handshake with the configured SNI, verified against the
system roots plus `ca_file`. With `control_sni`, a handshake that fails at the transport
(reset, stall, protocol error) is retried to the same address with the control name: when
only the real name fails, the verdict is tls_sni_blocked. With `fingerprints`, browser-shaped
ClientHellos go to the same address with the same SNI alongside: when one hello gets a
ServerHello and a listed shape does not, the verdict is tls_fingerprint_blocked."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from exporter import classify
from exporter.config.model import Check, TlsOptions
from exporter.errors import CertificateInvalid, FingerprintBlocked, ProbeFailure, SniBlocked
from exporter.netconnect import open_tcp, tls_handshake
from exporter.probeenv import ProbeEnv
from exporter.probes.tcp import connect
from exporter.result import Phases, Result
from exporter.verdicts import Verdict

if TYPE_CHECKING:
    from exporter.fingerprints.attempt import ShapeOutcome

# Failures an SNI filter cannot produce: a certificate that does not verify means the
# handshake completed, so a name-based block would not explain it.
_NOT_RETRIED = CertificateInvalid


async def probe(check: Check, env: ProbeEnv, deadline: float) -> Result:
    options = check.options
    assert isinstance(options, TlsOptions)
    loop = asyncio.get_running_loop()
    phases = Phases()
    result = Result(Verdict.OK, phases=phases.durations)
    connection = await connect(check, env, deadline, phases, result)
    if connection is None:
        # No browser shape can get through where TCP did not: each reads as failed.
        result.fingerprints = dict.fromkeys(options.fingerprints, False)
        return result
    handshake_deadline = deadline
    if options.control_sni:
        # Both handshakes must fit in the timeout: the first gets at most half of it, and
        # never more than the retry will have left.
        now = loop.time()
        handshake_deadline = now + min(check.timeout / 2, (deadline - now) / 2)
    context = env.ssl_context(options.verify)
    # Browser-shaped hellos go out at once, beside our own, to the address that answered;
    # without shapes no task is made (one per run costs a measurable share of a handshake).
    shapes = (
        asyncio.ensure_future(
            _try_shapes(
                options.fingerprints,
                connection.address,
                check.port,
                options.sni,
                handshake_deadline,
            )
        )
        if options.fingerprints
        else None
    )
    own: ProbeFailure | None = None
    try:
        try:
            stream = await tls_handshake(
                connection.sock, context, options.sni, handshake_deadline, phases
            )
        except ProbeFailure as failure:
            own = failure
            result.verdict, result.detail = classify.verdict(failure), failure.detail
        else:
            result.cert_expiry = stream.cert_expiry()
            stream.close()
        outcomes = await shapes if shapes is not None else []
    finally:
        if shapes is not None:
            shapes.cancel()
    if _judge_shapes(result, own, outcomes):
        return result
    if own is not None and options.control_sni and not isinstance(own, _NOT_RETRIED):
        await _control_retry(check, env, deadline, options, result)
    return result


async def _try_shapes(
    names: tuple[str, ...], address: str, port: int, server_name: str, deadline: float
) -> list[ShapeOutcome]:
    """The browser shapes' attempts; imported only when a check lists shapes, because the
    key generation behind them loads cryptography (~10 MB of every process otherwise)."""
    if not names:
        return []
    from exporter.fingerprints.attempt import try_shapes

    return await try_shapes(names, address, port, server_name, deadline)


def _judge_shapes(result: Result, own: ProbeFailure | None, outcomes: list[ShapeOutcome]) -> bool:
    """Record the browser shapes' outcomes; True when they decide the verdict."""
    if not outcomes:
        return False
    result.fingerprints = {outcome.shape: outcome.ok for outcome in outcomes}
    if not classify.fingerprint_blocked(own, result.fingerprints):
        return False
    mine = "own ClientHello: " + (own.detail if own is not None else "handshake completed")
    blocked = FingerprintBlocked("; ".join([mine, *(outcome.detail for outcome in outcomes)]))
    result.verdict, result.detail = classify.verdict(blocked), blocked.detail
    return True


async def _control_retry(
    check: Check, env: ProbeEnv, deadline: float, options: TlsOptions, result: Result
) -> None:
    """Handshake again to the address that answered, with the control name, verification
    off: completing the handshake is all it has to prove."""
    assert result.address is not None and options.control_sni is not None
    control_sni = options.control_sni
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        connection = await open_tcp([result.address], check.port, deadline)
        stream = await tls_handshake(connection.sock, env.ssl_context(False), control_sni, deadline)
    except ProbeFailure as failure:
        result.detail += f"; with control SNI {control_sni} too: {failure.detail}"
        return
    stream.close()
    blocked = SniBlocked(
        f"SNI {options.sni}: "
        f"{result.detail}; with control SNI {control_sni} the handshake completed "
        f"in {loop.time() - started:.3f}s"
    )
    result.verdict, result.detail = classify.verdict(blocked), blocked.detail
