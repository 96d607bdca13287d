"""What the web endpoints show, rendered from the exporter's state: /probe's plain-text
evidence, the /api/v1/status document and the index page. exporter/webserver/ serves them."""

from __future__ import annotations

import html
import time
import urllib.parse
from typing import Any

from exporter import __version__
from exporter.app import Exporter
from exporter.metrics import Snapshot
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


def status_document(exporter: Exporter) -> dict[str, Any]:
    """/api/v1/status: the status page's data, one entry per service and check."""
    snap = exporter.store.snapshot()
    services = []
    for service in snap.services:
        service_result = snap.service_result(service)
        checks = []
        for check in service.checks:
            state = snap.states.get(check.key)
            result = state.result if state else None
            checks.append(
                {
                    "name": check.name,
                    "kind": check.kind,
                    "target": check.target,
                    "interval": check.interval,
                    "timeout": check.timeout,
                    "verdict": str(result.verdict) if result else None,
                    "success": result.ok if result else None,
                    "since": state.since if state and result else None,
                    "last_run": result.finished if result else None,
                    "duration": result.duration if result else None,
                    "runs": state.runs if state else 0,
                    "failures": {str(k): v for k, v in state.failures.items()} if state else {},
                    "evidence": result.to_dict() if result else None,
                }
            )
        services.append(
            {
                "name": service.name,
                "description": service.description,
                "role": service.role,
                "scope": service.scope,
                "up": service_result[0] if service_result else None,
                "verdict": str(service_result[1]) if service_result else None,
                "since": snap.service_since(service),
                "checks": checks,
            }
        )
    return {
        "version": __version__,
        "vantage_state": str(snap.vantage()),
        "config": {
            "file": exporter.config_file,
            "last_reload_successful": snap.reload_successful,
            "last_reload_success_timestamp": snap.reload_success_timestamp,
        },
        "services": services,
    }


def index_page(snap: Snapshot) -> str:
    """A plain overview table with links; the full status page is separate work."""
    rows = []
    for service in snap.services:
        for check in service.checks:
            state = snap.states.get(check.key)
            result = state.result if state else None
            verdict = str(result.verdict) if result else "pending"
            since = _clock(state.since) if state and result else "-"
            last = _clock(result.finished) if result else "-"
            link = "/probe?" + urllib.parse.urlencode(
                {"service": service.name, "check": check.name}
            )
            rows.append(
                f"<tr><td>{html.escape(service.name)}</td><td>{html.escape(check.name)}</td>"
                f"<td>{html.escape(check.kind)}</td><td class='{html.escape(verdict)}'>"
                f"{html.escape(verdict)}</td><td>{since}</td><td>{last}</td>"
                f"<td><a href='{html.escape(link)}'>probe now</a></td></tr>"
            )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>reachability_exporter</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}"
        ".ok{color:#080}td[class]:not(.ok){color:#b00}</style></head><body>"
        f"<h1>reachability_exporter</h1><p>Vantage state: <b>{snap.vantage()}</b></p>"
        "<p><a href='/metrics'>Metrics</a> · <a href='/api/v1/status'>Status (JSON)</a></p>"
        "<table><tr><th>service</th><th>check</th><th>kind</th><th>verdict</th>"
        "<th>since</th><th>last run</th><th></th></tr>" + "".join(rows) + "</table></body></html>"
    )


def _clock(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(timestamp))
