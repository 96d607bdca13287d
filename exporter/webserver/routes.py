"""Which path answers what (the README's HTTP endpoints), independent of the server: each
request becomes a Reply. Pages built from the whole state (the index, the status document)
are rendered in a worker thread, and identical requests in flight share one rendering, so
the event loop that runs the probes never renders a page."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Callable

from exporter import statuspage
from exporter.app import Exporter
from exporter.web import evidence_text
from exporter.webserver.exposition import CONTENT_TYPE, Telemetry, accepts_gzip
from exporter.webserver.probegate import ProbeBusy, ProbeGate
from exporter.webserver.reply import Reply, Request

# A page handler: the exporter and the query string in, (status, content type, body) out.
PageHandler = Callable[[Exporter, dict[str, list[str]]], "Reply | tuple[int, str, bytes]"]

# /probe waits at most this much beyond the slowest selected check's timeout.
PROBE_GRACE = 5.0
# A reload that takes longer than this answers 503 (it goes on, and its outcome shows on
# reachability_exporter_config_last_reload_successful).
RELOAD_TIMEOUT = 60.0


# `/`, /api/v1/status and /api/v1/changes: exporter/statuspage.
PAGES: dict[str, PageHandler] = dict(statuspage.ROUTES)


class Router:
    def __init__(
        self,
        exporter: Exporter,
        *,
        telemetry_path: str,
        pool: concurrent.futures.Executor,
        probe_runs: int,
    ) -> None:
        self.exporter = exporter
        self.telemetry_path = telemetry_path
        self._pool = pool
        self.telemetry = Telemetry(exporter, pool)
        self.probes = ProbeGate(exporter, probe_runs)
        self._pages_in_flight: dict[tuple[str, str], asyncio.Future[Reply]] = {}

    def close(self) -> None:
        self.telemetry.close()

    async def handle(self, request: Request) -> Reply:
        path = request.path
        if path == "/-/reload":
            if request.method != "POST":
                return Reply.text(405, "Only POST requests allowed\n", ("Allow", "POST"))
            return await self._reload()
        known = path in PAGES or path in (self.telemetry_path, "/probe", "/-/healthy", "/-/ready")
        if not known:
            return Reply.text(404, "Not Found\n")
        if request.method not in ("GET", "HEAD"):
            return Reply.text(405, "Method Not Allowed\n", ("Allow", "GET, HEAD"))
        if path == self.telemetry_path:
            return await self._metrics(request)
        if path == "/probe":
            return await self._probe(request.query)
        if path == "/-/healthy":
            return Reply.text(200, "Healthy\n")
        if path == "/-/ready":
            ready = self.exporter.store.ready
            return Reply.text(200, "Ready\n") if ready else Reply.text(503, "Not ready\n")
        return await self._page(path, request.query)

    async def _metrics(self, request: Request) -> Reply:
        gzipped = accepts_gzip(request.headers.get("accept-encoding", ""))
        body = await self.telemetry.body(gzipped)
        headers = (("Content-Encoding", "gzip"),) if gzipped else ()
        return Reply(200, CONTENT_TYPE, body, (*headers, ("Vary", "Accept-Encoding")))

    async def _page(self, path: str, query: dict[str, list[str]]) -> Reply:
        key = (path, json.dumps(query, sort_keys=True))
        future = self._pages_in_flight.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            handler = PAGES[path]
            future = asyncio.ensure_future(
                loop.run_in_executor(self._pool, lambda: Reply.of(handler(self.exporter, query)))
            )
            self._pages_in_flight[key] = future
            future.add_done_callback(lambda _: self._pages_in_flight.pop(key, None))
        return await asyncio.shield(future)

    async def _reload(self) -> Reply:
        task = asyncio.ensure_future(self.exporter.reload())
        try:
            # shield: a reload, once started, finishes even if its client goes away.
            async with asyncio.timeout(RELOAD_TIMEOUT):
                ok, message = await asyncio.shield(task)
        except TimeoutError:
            return Reply.text(503, "the reload did not finish in time\n")
        return Reply.text(200 if ok else 500, message + "\n")

    async def _probe(self, query: dict[str, list[str]]) -> Reply:
        service = (query.get("service") or [""])[0]
        check = query["check"][0] if query.get("check") else None
        if not service:
            return Reply.text(400, "service parameter is required\n")
        checks = self.exporter.find_checks(service, check)
        if checks is None:
            what = f"check {check!r} of service {service!r}" if check else f"service {service!r}"
            return Reply.text(404, f"unknown {what}: only configured checks can be probed\n")
        timeout = max(c.timeout for c in checks) + PROBE_GRACE
        try:
            async with asyncio.timeout(timeout):
                results = await self.probes.run(checks)
        except ProbeBusy as exc:
            return Reply.text(503, f"too many probes at once: {exc}; try again later\n")
        except TimeoutError:
            # Waiting for a probe slot took too long: every slot is busy with slow targets.
            return Reply.text(
                503, f"the probe did not finish within {timeout:g}s: the exporter is busy\n"
            )
        text = "".join(evidence_text(c.service, c.name, c.kind, c.target, r)
                       for c, r in zip(checks, results, strict=True))  # fmt: skip
        return Reply.text(200, text)
