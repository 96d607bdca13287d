"""The HTTP endpoints the README lists. They run in threads of their own, so a scrape reads a
snapshot and never waits for the event loop; only /probe and /-/reload hand work to it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import html
import io
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from exporter import __version__
from exporter.app import Exporter
from exporter.metrics import Snapshot
from exporter.result import Result
from exporter.webconfig import WebConfig

# A client that sends nothing for this long, or takes longer than this to send a whole
# request (head and body), is dropped, so slow clients cannot pin threads.
REQUEST_TIMEOUT = 30.0
# A request body (only POST /-/reload accepts one, and ignores it) is read and dropped up to
# this size, so the next request on the connection starts where it should; a larger one
# closes the connection.
MAX_REQUEST_BODY = 64 * 1024
# /probe waits at most this much beyond the slowest selected check's timeout.
PROBE_GRACE = 5.0

log = logging.getLogger(__name__)
WRITE_BATCH = 256 * 1024


class WebServer:
    """One listening socket per --web.listen-address, all served by the same handlers."""

    def __init__(self, exporter: Exporter, addresses: list[str], web_config: WebConfig) -> None:
        self.exporter = exporter
        self.web_config = web_config
        self.servers = [self._bind(address) for address in addresses]
        self._threads: list[threading.Thread] = []

    @property
    def ports(self) -> list[int]:
        return [server.server_address[1] for server in self.servers]

    def _bind(self, address: str) -> _Server:
        host, port = parse_listen_address(address)
        server = _Server(host, port, self)
        if self.web_config.ssl_context is not None:
            server.tls = self.web_config.ssl_context
        return server

    def start(self) -> None:
        for server in self.servers:
            thread = threading.Thread(
                target=server.serve_forever, name=f"web {server.server_address}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
            log.info("listening address=%s port=%s", *server.server_address[:2])

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


def parse_listen_address(address: str) -> tuple[str, int]:
    """`:9869`, `0.0.0.0:9869`, `[::1]:9869`, `localhost:9869` → (host, port); an empty
    host listens on every address, IPv6 included where the system has it."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid listen address {address!r}: expected [host]:port")
    return host.strip("[]"), int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def __init__(self, host: str, port: int, web: WebServer) -> None:
        self.web = web
        self.address_family = socket.AF_INET6 if (not host or ":" in host) else socket.AF_INET
        bind_host = host or "::"
        try:
            super().__init__((bind_host, port), _Handler)
        except OSError:
            if host:
                raise
            # No IPv6 on this host: all IPv4 addresses will do.
            self.address_family = socket.AF_INET
            super().__init__(("0.0.0.0", port), _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver's default prints a traceback to stderr, outside the log format: a
        # plain-HTTP client on a TLS port, or a port scanner, is not worth more than this.
        log.debug("http request from %s failed", client_address, exc_info=True)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        conn.settimeout(REQUEST_TIMEOUT)
        if self.tls is not None:
            # The handshake happens in the handler's thread (do_handshake_on_connect), so a
            # slow TLS client cannot block the accept loop.
            conn = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr


class _DeadlineReader(io.RawIOBase):
    """The socket as the request parser reads it: every read is bounded by the time left
    for the current request, so a client that drips a byte now and then cannot hold a
    thread for ever (the socket timeout alone restarts with every byte)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.deadline = time.monotonic() + REQUEST_TIMEOUT

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took too long to arrive")
        self._sock.settimeout(min(left, REQUEST_TIMEOUT))
        try:
            return self._sock.recv_into(buffer)
        finally:
            self._sock.settimeout(REQUEST_TIMEOUT)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = f"reachability-exporter/{__version__}"

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.do_handshake()
            except (OSError, ssl.SSLError):
                self.close_connection = True
                raise ConnectionAbortedError("TLS handshake failed") from None
        super().setup()
        # Our own reader instead of the socket file (closed, or it would keep the socket
        # open after the request ends).
        self.rfile.close()
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.deadline = time.monotonic() + REQUEST_TIMEOUT
        super().handle_one_request()

    def handle(self) -> None:
        # The client went away mid-request: there is nobody left to answer.
        with contextlib.suppress(ConnectionError, TimeoutError, ssl.SSLError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s %s", self.address_string(), format % args)

    @property
    def exporter(self) -> Exporter:
        return self.server.web.exporter

    # -- dispatch -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        self._discard_body()
        if not self.server.web.web_config.authorized(self.headers.get("Authorization")):
            self._send(
                401, "Unauthorized\n", headers={"WWW-Authenticate": 'Basic realm="exporter"'}
            )
            return
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        routes = {
            "/metrics": self._metrics,
            "/": self._index,
            "/api/v1/status": self._status,
            "/probe": self._probe,
            "/-/healthy": self._healthy,
            "/-/ready": self._ready,
            "/-/reload": self._reload,
        }
        handler = routes.get(url.path)
        if handler is None:
            self._send(404, "Not Found\n")
            return
        if url.path == "/-/reload":
            if method != "POST":
                self._send(405, "Only POST requests allowed\n", headers={"Allow": "POST"})
                return
        elif method == "POST":
            self._send(405, "Method Not Allowed\n", headers={"Allow": "GET, HEAD"})
            return
        handler(query)

    def _discard_body(self) -> None:
        """Read and drop a request body: left unread, it would be taken for the next
        request on the connection."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return
        length = self.headers.get("Content-Length", "0").strip()
        if not length.isdigit() or int(length) > MAX_REQUEST_BODY:
            self.close_connection = True
            return
        if int(length):
            self.rfile.read(int(length))

    def _send(
        self,
        status: int,
        body: str | bytes | list[bytes],
        content_type: str = "text/plain; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        parts = (
            body if isinstance(body, list) else [body.encode() if isinstance(body, str) else body]
        )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(sum(map(len, parts))))
        for name, value in {**self.server.web.web_config.headers, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            # Written in batches of about WRITE_BATCH bytes: neither one syscall per piece
            # nor a copy of the whole body.
            batch: list[bytes] = []
            size = 0
            for part in parts:
                batch.append(part)
                size += len(part)
                if size >= WRITE_BATCH:
                    self.wfile.write(b"".join(batch))
                    batch, size = [], 0
            if batch:
                self.wfile.write(b"".join(batch))

    # -- endpoints ------------------------------------------------------------------------------

    def _metrics(self, query: dict[str, list[str]]) -> None:
        # Pre-rendered by the store; text format 0.0.4, which every Prometheus accepts.
        self._send(200, self.exporter.store.exposition_parts(), CONTENT_TYPE_LATEST)

    def _healthy(self, query: dict[str, list[str]]) -> None:
        self._send(200, "Healthy\n")

    def _ready(self, query: dict[str, list[str]]) -> None:
        if self.exporter.store.ready:
            self._send(200, "Ready\n")
        else:
            self._send(503, "Not ready\n")

    def _reload(self, query: dict[str, list[str]]) -> None:
        try:
            ok, message = self._on_loop(self.exporter.reload(), timeout=60.0)
        except TimeoutError:
            self._send(503, "the reload did not finish in time\n")
            return
        self._send(200 if ok else 500, message + "\n")

    def _status(self, query: dict[str, list[str]]) -> None:
        body = json.dumps(status_document(self.exporter), indent=2, sort_keys=False)
        self._send(200, body + "\n", "application/json")

    def _index(self, query: dict[str, list[str]]) -> None:
        self._send(200, index_page(self.exporter.store.snapshot()), "text/html; charset=utf-8")

    def _probe(self, query: dict[str, list[str]]) -> None:
        service = (query.get("service") or [""])[0]
        check = query["check"][0] if query.get("check") else None
        if not service:
            self._send(400, "service parameter is required\n")
            return
        checks = self.exporter.find_checks(service, check)
        if checks is None:
            what = f"check {check!r} of service {service!r}" if check else f"service {service!r}"
            self._send(404, f"unknown {what}: only configured checks can be probed\n")
            return
        timeout = max(c.timeout for c in checks) + PROBE_GRACE
        try:
            results = self._on_loop(self.exporter.run_now(checks), timeout=timeout)
        except TimeoutError:
            # Waiting for a probe slot took too long: every slot is busy with slow targets.
            self._send(503, f"the probe did not finish within {timeout:g}s: the exporter is busy\n")
            return
        text = "".join(evidence_text(c.service, c.name, c.kind, c.target, r)
                       for c, r in zip(checks, results, strict=True))  # fmt: skip
        self._send(200, text)

    def _on_loop(self, coro: Any, timeout: float) -> Any:
        loop = self.exporter.loop
        assert loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()  # nobody is waiting for the result any more
            raise


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
