"""The status page `/`, `/api/v1/status` and `/api/v1/changes`, as handlers that know no web
framework: `handler(exporter, query) -> (status, content type, body)`, `query` as
urllib.parse.parse_qs gives it. The page is one static HTML file with its CSS and script
inline; it fetches /api/v1/status and builds its DOM from that JSON with textContent, so
nothing from the configuration or a server's answer is ever interpreted as HTML."""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.resources
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from exporter import __version__
from exporter.journal import TYPE_VANTAGE, parse_rfc3339
from exporter.statuspage.words import VANTAGE_TEXT, verdict_text
from exporter.verdicts import Verdict

if TYPE_CHECKING:
    from exporter.app import Exporter

Response = tuple[int, str, bytes]
Handler = Callable[["Exporter", dict[str, list[str]]], Response]

JSON = "application/json"
HTML = "text/html; charset=utf-8"
DEFAULT_CHANGES = 100
MAX_CHANGES = 10_000
CHANGES_PARAMETERS = ("service", "check", "since", "limit")


def _json(status: int, document: object) -> Response:
    return status, JSON, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


# -- / -------------------------------------------------------------------------------------------


@functools.cache
def page_html() -> bytes:
    """page.html with its Content-Security-Policy completed: only the page's own script (by
    its hash) may run, so even markup that slipped into the DOM could not execute."""
    text = importlib.resources.files(__package__).joinpath("page.html").read_text("utf-8")
    script = re.search(r"<script>(.*?)</script>", text, re.S)
    assert script is not None, "page.html has no inline script"
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    return text.replace("{{script-hash}}", f"sha256-{digest}").encode()


def page(exporter: Exporter, query: dict[str, list[str]]) -> Response:
    return 200, HTML, page_html()


# -- /api/v1/status ------------------------------------------------------------------------------


def status_document(exporter: Exporter) -> dict[str, Any]:
    """/api/v1/status: every service and check with its verdict (code and words), since when,
    the evidence of its last run, and its recent verdicts; the vantage state, explained."""
    snap = exporter.store.snapshot()
    changes = exporter.changes
    vantage = snap.vantage()
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
                    "verdict_text": verdict_text(result.verdict if result else None),
                    "success": result.ok if result else None,
                    "since": state.since if state and result else None,
                    "last_run": result.finished if result else None,
                    "duration": result.duration if result else None,
                    "runs": state.runs if state else 0,
                    "failures": {str(k): v for k, v in state.failures.items()} if state else {},
                    "evidence": result.to_dict() if result else None,
                    # Restored from the journal at start, so before a check's first run
                    # after a restart the page can say what it was, and since when.
                    "history": [
                        _period(since, verdict) for since, verdict in changes.history(check.key)
                    ],
                }
            )
        verdict = service_result[1] if service_result else None
        services.append(
            {
                "name": service.name,
                "description": service.description,
                "role": service.role,
                "scope": service.scope,
                "up": service_result[0] if service_result else None,
                "verdict": str(verdict) if verdict else None,
                "verdict_text": verdict_text(verdict),
                "since": snap.service_since(service),
                "checks": checks,
            }
        )
    return {
        "version": __version__,
        "vantage_state": str(vantage),
        "vantage": {
            "state": str(vantage),
            "text": VANTAGE_TEXT[vantage],
            "since": changes.vantage_since,
        },
        "config": {
            "file": exporter.config_file,
            "last_reload_successful": snap.reload_successful,
            "last_reload_success_timestamp": snap.reload_success_timestamp,
        },
        "services": services,
    }


def _period(since: float, verdict: str) -> dict[str, Any]:
    return {"verdict": verdict, "verdict_text": verdict_text(Verdict(verdict)), "since": since}


def status(exporter: Exporter, query: dict[str, list[str]]) -> Response:
    return _json(200, status_document(exporter))


# -- /api/v1/changes -----------------------------------------------------------------------------


class BadParameter(ValueError):
    pass


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadParameter(f"{name}: given {len(values)} times, at most once")
    return values[0] or None


def changes(exporter: Exporter, query: dict[str, list[str]]) -> Response:
    """The journal's records, newest first; `service`, `check`, `since` (RFC 3339: records at
    or after it) and `limit` (1 to 10000, default 100) are all optional."""
    try:
        unknown = sorted(set(query) - set(CHANGES_PARAMETERS))
        if unknown:
            raise BadParameter(
                f"unknown parameter {unknown[0]!r}; known: {', '.join(CHANGES_PARAMETERS)}"
            )
        service, check = _one(query, "service"), _one(query, "check")
        since_text, limit_text = _one(query, "since"), _one(query, "limit")
        since = None
        if since_text is not None:
            try:
                since = parse_rfc3339(since_text)
            except ValueError:
                raise BadParameter(
                    f"since: {since_text!r} is not an RFC 3339 time (2026-01-31T12:00:00Z)"
                ) from None
        limit = DEFAULT_CHANGES
        if limit_text is not None:
            if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_CHANGES:
                raise BadParameter(f"limit: {limit_text!r} is not a number from 1 to {MAX_CHANGES}")
            limit = int(limit_text)
    except BadParameter as exc:
        return _json(400, {"error": str(exc)})
    records = []
    for record in exporter.journal.newest_first():
        if service is not None and record.get("service") != service:
            continue
        if check is not None and record.get("check") != check:
            continue
        if (service is not None or check is not None) and record.get("type") == TYPE_VANTAGE:
            continue
        if since is not None:
            try:
                if parse_rfc3339(str(record.get("time"))) < since:
                    continue
            except ValueError:
                continue
        records.append(record)
        if len(records) >= limit:
            break
    return _json(200, {"records": records})


ROUTES: dict[str, Handler] = {
    "/": page,
    "/api/v1/status": status,
    "/api/v1/changes": changes,
}
