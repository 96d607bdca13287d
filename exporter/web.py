"""What /probe shows, rendered from the exporter's state: the plain-text evidence (the status
page and /api/v1/status are exporter/statuspage). exporter/webserver/ serves them."""

from __future__ import annotations

import time

from exporter.result import Result


def evidence_text(service: str, check: str, kind: str, target: str, result: Result) -> str:
    """Plain-text evidence of one run, for /probe and `--once --output=table -v`."""
    lines = [f"service={service} check={check} kind={kind} target={target}"]
    lines.append(f"verdict: {result.verdict}")
    lines.append(f"duration: {result.duration:.3f}s")
    if result.phases:
        lines.append("phases: " + " ".join(f"{k}={v:.4f}s" for k, v in result.phases.items()))
    if result.addresses:
        lines.append("addresses: " + " ".join(result.addresses))
    if result.address:
        lines.append(f"connected: {result.address}")
    for answer in result.resolvers:
        role = " (control)" if answer.is_control else ""
        found = " ".join(answer.addresses) or "-"
        lines.append(
            f"resolver {answer.resolver}{role}: {answer.verdict} rcode={answer.rcode or '-'} "
            f"answers={found} {answer.detail}".rstrip()
        )
    if result.status_code is not None:
        lines.append(f"status: {result.status_code}")
    if result.final_url:
        lines.append(f"final_url: {result.final_url}")
    if result.cert_expiry is not None:
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(result.cert_expiry))
        lines.append(f"cert_not_after: {expiry}")
    if result.bytes_received is not None:
        lines.append(f"bytes: {result.bytes_received}")
    if result.bytes_sent is not None:
        lines.append(f"bytes_acknowledged: {result.bytes_sent}")
    if result.rate is not None:
        lines.append(f"rate: {result.rate:.0f} B/s")
    if result.segments_sent is not None:
        lines.append(f"segments: {result.segments_sent} sent, {result.segments_received} received")
    for shape, ok in result.fingerprints.items():
        lines.append(f"fingerprint {shape}: {'ServerHello' if ok else 'failed'}")
    if result.rtt is not None:
        lines.append(f"rtt: {result.rtt:.4f}s")
    if result.detail:
        lines.append(f"detail: {result.detail}")
    return "\n".join(lines) + "\n\n"
