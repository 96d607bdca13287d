"""Real processes and loopback servers for the Prometheus, rules and dashboard tests: the
exporter, Prometheus (server, agent, remote-write receiver), Alertmanager, and small
servers that behave like healthy and censored services (refused, HTTP 500, NXDOMAIN at one
resolver, SNI filtering, a transfer frozen at 16 KiB, a throttled one, silent UDP)."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from peers.exporterproc import ExporterProcess
from peers.listeners import free_port

LOOPBACK = "127.0.0.1"


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll until predicate returns something truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except (OSError, ValueError, KeyError) as exc:  # not up yet, or half-written data
            last_error = exc
        else:
            if result:
                return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last_error})")


# Loopback only: never through a proxy named in the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with _opener.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post(url: str, body: bytes = b"", content_type: str = "application/json") -> int:
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", content_type)
    try:
        with _opener.open(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


# ---- Processes ----------------------------------------------------------------------------


class Process:
    """A child process with its output in a log file; stop() always kills it."""

    def __init__(self, name: str, args: list[str], log_dir: Path, **popen: Any) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            args, stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            **popen,
        )  # fmt: skip

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_ready(self, url: str, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}"
                )
            return http_get(url, timeout=2)[0] == 200

        try:
            wait_for(f"{self.name} at {url}", ready, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {self.name} log:\n{self.tail()}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log_file.close()


class Exporter(ExporterProcess):
    """The real exporter, started, named and logging into `log_dir` beside the others."""

    def __init__(self, name: str, config: Path, log_dir: Path) -> None:
        super().__init__(config, log_path=log_dir / f"{name}.log")
        self.name = name
        self.address = f"{LOOPBACK}:{self.port}"
        self.start(ready_timeout=30.0)


class Prometheus(Process):
    """prometheus in server, agent (`agent=True`) or receiver (`receiver=True`) mode."""

    def __init__(
        self, name: str, config: dict[str, Any], work: Path, *, agent: bool = False,
        receiver: bool = False,
    ) -> None:  # fmt: skip
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        config_file = work / f"{name}.yml"
        # JSON is YAML: no dependency on how a YAML emitter quotes PromQL.
        config_file.write_text(json.dumps(config, indent=1))
        storage = work / f"{name}-data"
        args = ["prometheus", f"--config.file={config_file}",
                f"--web.listen-address={LOOPBACK}:{self.port}", "--log.level=warn"]  # fmt: skip
        if agent:
            args += ["--enable-feature=agent", f"--storage.agent.path={storage}"]
        else:
            args += [f"--storage.tsdb.path={storage}"]
        if receiver:
            args.append("--web.enable-remote-write-receiver")
        super().__init__(name, args, work)
        self.wait_ready(f"{self.url}/-/ready")

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http_get(url)
        payload = json.loads(body)
        if status != 200 or payload.get("status") != "success":
            raise AssertionError(f"{path} {params}: HTTP {status}: {payload.get('error')}")
        return payload["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] == "vector" else [data["result"]]

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("alerts")["alerts"])


# ---- Loopback servers ---------------------------------------------------------------------


P = TypeVar("P", Process, ExporterProcess)


class Cleanup(contextlib.ExitStack):
    """Undoes a fixture's setup in reverse, whatever failed: every process is stopped."""

    def add_process(self, process: P) -> P:
        self.callback(process.stop)
        return process


class TCPListener:
    """A listening socket served by a thread (and a thread per connection); as is, a healthy
    TCP service that accepts and closes."""

    def __init__(self, kind: int = socket.SOCK_STREAM) -> None:
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind((LOOPBACK, 0))
        self.port = int(self.sock.getsockname()[1])
        self.address = f"{LOOPBACK}:{self.port}"
        self.closed = threading.Event()
        if kind == socket.SOCK_STREAM:
            self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle_safely, args=(conn,), daemon=True).start()

    def _handle_safely(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(5)
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        """Accept and close: a healthy TCP service."""

    def close(self) -> None:
        self.closed.set()
        self.sock.close()
        self.thread.join(timeout=2)


class _RawHTTP(TCPListener):
    """Answers a request with a large body delivered by `send_body`."""

    def handle(self, conn: socket.socket) -> None:
        conn.recv(65536)  # the request; its content does not matter
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: 1048576\r\nConnection: close\r\n\r\n")  # fmt: skip
        self.send_body(conn)

    def send_body(self, conn: socket.socket) -> None:
        raise NotImplementedError


class StallingHTTP(_RawHTTP):
    """The "16 KB" cut-off: 16 KiB of the body, then silence while the connection stays up."""

    def send_body(self, conn: socket.socket) -> None:
        conn.sendall(b"x" * 16384)
        self.closed.wait(3)  # hold it open without sending; the client gives up first


class ThrottledHTTP(_RawHTTP):
    """Delivers the body at about 10 kB/s."""

    def send_body(self, conn: socket.socket) -> None:
        for _ in range(200):
            if self.closed.is_set():
                return
            conn.sendall(b"x" * 512)
            time.sleep(0.05)


class SNIFilteringTLS(TCPListener):
    """Fails the handshake for the names in `blocked` (as a DPI box would) and completes it
    for any other name, with a certificate from the test CA."""

    def __init__(self, context: ssl.SSLContext, blocked: set[str]) -> None:
        def by_name(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> int | None:
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE if name in blocked else None

        context.sni_callback = by_name
        self.context = context
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        with self.context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1024)  # until the client closes


class FingerprintFilteringTLS(TCPListener):
    """Resets a connection whose first record carries `needle` (a fingerprinting DPI box
    matching a browser's ClientHello) and completes the handshake for any other."""

    def __init__(self, context: ssl.SSLContext, needle: bytes) -> None:
        self.context = context
        self.needle = needle
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        hello = b""
        for _ in range(500):  # peek until the whole first record is in
            hello = conn.recv(16384, socket.MSG_PEEK)
            if not hello or (len(hello) >= 5 and len(hello) >= 5 + int.from_bytes(hello[3:5])):
                break
            time.sleep(0.002)
        if self.needle in hello:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return  # closing with linger 0 sends the RST
        with self.context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1024)


class StallingUploadSink(TCPListener):
    """The "16 KB" cut-off upstream: reads 16 KiB of a POST, then nothing while the
    connection stays up; its small receive buffer fills and the kernel stops acknowledging."""

    def __init__(self) -> None:
        super().__init__()
        # Inherited by every connection accepted from now on.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)

    def handle(self, conn: socket.socket) -> None:
        received = 0
        while received < 16384:
            data = conn.recv(16384 - received)
            if not data:
                return
            received += len(data)
        self.closed.wait(3)


class SilentUDP:
    """A bound UDP port that never answers: STUN and QUIC probes time out (udp_timeout)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.address = f"{LOOPBACK}:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


class DNSServer:
    """A UDP name server: names in `answers` resolve to their address (A) and have no AAAA
    (NODATA); every other name is NXDOMAIN."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = {name.rstrip(".") + ".": addr for name, addr in answers.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.2)
        self.url = f"udp://{LOOPBACK}:{self.sock.getsockname()[1]}"
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(Exception):  # a malformed query gets no answer
                query = dns.message.from_wire(wire)
                response = dns.message.make_response(query)
                question = query.question[0]
                address = self.answers.get(question.name.to_text())
                if address is None:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                elif question.rdtype == dns.rdatatype.A:
                    response.answer.append(
                        dns.rrset.from_text(question.name, 60, "IN", "A", address)
                    )
                self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self.closed.set()
        self.sock.close()
        self.thread.join(timeout=2)


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = b"ok\n" if self.status == 200 else b"broken\n"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output for failures


class StatusHTTP:
    """A plain HTTP server answering every GET with `status`."""

    def __init__(self, status: int) -> None:
        handler = type("Handler", (_StatusHandler,), {"status": status})
        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), handler)
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
