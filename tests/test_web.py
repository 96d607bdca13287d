"""The HTTP endpoints the README lists, against the real exporter process: metrics, status,
/probe limited to configured checks, health, readiness, reloads that keep a good config when
the new one is bad, several listen addresses, and the exporter-toolkit web config."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from exporter.app import Exporter
from exporter.webconfig import WebConfig
from exporter.webconfig import load as load_web_config
from exporter.webserver import WebServer
from exporter.webserver import connection as connection_module
from peers import REPO, certs
from peers.exporterproc import ExporterProcess
from peers.listeners import free_port


def config_text(open_port: int, closed: int, extra: str = "") -> str:
    return f"""
defaults: {{interval: 1s, timeout: 500ms}}
services:
  open:
    role: control
    checks:
      - {{name: tcp, kind: tcp, target: "127.0.0.1:{open_port}"}}
  closed:
    description: A port nobody listens on
    checks:
      - {{name: tcp, kind: tcp, target: "127.0.0.1:{closed}"}}
{extra}"""


@pytest.fixture
def exporter(tmp_path: Path, listener: int, closed_port: int) -> Iterator[ExporterProcess]:
    path = tmp_path / "config.yaml"
    path.write_text(config_text(listener, closed_port))
    process = ExporterProcess(path).start()
    yield process
    assert process.stop() == 0, process.logs()


def test_metrics_report_each_checks_verdict(exporter: ExporterProcess) -> None:
    exporter.wait_for(lambda: exporter.verdict("closed", "tcp") == "tcp_refused")
    assert exporter.verdict("open", "tcp") == "ok"
    assert exporter.value("reachability_service_up", service="open") == 1.0
    assert exporter.value("reachability_vantage_state", state="online") == 1.0
    status, text = exporter.get("/metrics")
    assert status == 200 and "process_cpu_seconds_total" in text


def test_health_and_readiness(exporter: ExporterProcess) -> None:
    assert exporter.get("/-/healthy")[0] == 200
    assert exporter.get("/-/ready")[0] == 200
    assert exporter.get("/nope")[0] == 404


def test_status_api_gives_verdicts_since_and_evidence(exporter: ExporterProcess) -> None:
    exporter.wait_for(lambda: exporter.verdict("closed", "tcp"))
    status, body = exporter.get("/api/v1/status")
    assert status == 200
    document = json.loads(body)
    assert document["vantage_state"] in ("online", "unknown")
    services = {s["name"]: s for s in document["services"]}
    closed = services["closed"]
    assert closed["description"] == "A port nobody listens on"
    check = closed["checks"][0]
    assert check["verdict"] == "tcp_refused" and check["success"] is False
    assert check["since"] <= check["last_run"]
    assert check["evidence"]["addresses"] == ["127.0.0.1"]


def test_index_page_is_one_self_contained_page_that_reads_the_status_api(
    exporter: ExporterProcess,
) -> None:
    status, page = exporter.get("/")
    assert status == 200
    assert 'data-vantage-state="unknown"' in page and '"api/v1/status"' in page
    # No external assets: nothing is loaded from anywhere but this exporter.
    assert "src=" not in page and "<link" not in page
    # tests/test_status_page.py drives it in a real browser.


def test_probe_runs_a_configured_check_and_returns_evidence(exporter: ExporterProcess) -> None:
    status, text = exporter.get("/probe?service=closed&check=tcp")
    assert status == 200
    assert "verdict: tcp_refused" in text and "service=closed check=tcp" in text
    status, text = exporter.get("/probe?service=open")
    assert status == 200 and "verdict: ok" in text


def test_probe_refuses_anything_not_configured(exporter: ExporterProcess) -> None:
    assert exporter.get("/probe?service=elsewhere")[0] == 404
    assert exporter.get("/probe?service=open&check=nope")[0] == 404
    assert exporter.get("/probe")[0] == 400
    # A target in the query is ignored: only configured checks are ever probed.
    status, text = exporter.get("/probe?service=open&target=10.0.0.1:22")
    assert status == 200 and "10.0.0.1" not in text


def test_reload_endpoint_is_post_only(exporter: ExporterProcess) -> None:
    assert exporter.get("/-/reload")[0] == 405
    assert exporter.get("/-/reload", method="POST")[0] == 200


def test_bad_reload_keeps_the_running_config_and_a_good_one_applies(
    exporter: ExporterProcess, listener: int, closed_port: int
) -> None:
    exporter.wait_for(lambda: exporter.verdict("closed", "tcp"))
    good = exporter.config.read_text()
    exporter.config.write_text(good + "  broken: [\n")
    status, body = exporter.get("/-/reload", method="POST")
    assert status == 500 and "config.yaml" in body
    assert exporter.value("reachability_exporter_config_last_reload_successful") == 0.0
    assert exporter.verdict("closed", "tcp") == "tcp_refused"  # still running the old config
    runs = exporter.value("reachability_check_runs_total", service="open", check="tcp", kind="tcp")
    exporter.wait_for(
        lambda: (exporter.value(
            "reachability_check_runs_total", service="open", check="tcp", kind="tcp") or 0
        ) > (runs or 0)
    )  # fmt: skip

    # The new file drops `closed`, adds `again`; SIGHUP applies it like POST /-/reload.
    extra = f'  again:\n    checks: [{{name: tcp, kind: tcp, target: "127.0.0.1:{listener}"}}]\n'
    exporter.config.write_text(
        config_text(listener, closed_port, extra).replace(
            f'  closed:\n    description: A port nobody listens on\n    checks:\n'
            f'      - {{name: tcp, kind: tcp, target: "127.0.0.1:{closed_port}"}}\n', ""
        )
    )  # fmt: skip
    since_before = exporter.value(
        "reachability_check_last_change_timestamp_seconds", service="open", check="tcp", kind="tcp"
    )
    exporter.reload()
    exporter.wait_for(lambda: exporter.verdict("again", "tcp") == "ok")
    assert exporter.verdict("closed", "tcp") is None
    assert exporter.value("reachability_exporter_config_last_reload_successful") == 1.0
    since_after = exporter.value(
        "reachability_check_last_change_timestamp_seconds", service="open", check="tcp", kind="tcp"
    )
    assert since_after == since_before  # an unchanged check keeps its state


def test_every_listen_address_serves(tmp_path: Path, listener: int, closed_port: int) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text(listener, closed_port))
    second = free_port()
    process = ExporterProcess(path, [f"--web.listen-address=127.0.0.1:{second}"]).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{second}/-/healthy", timeout=5) as r:
            assert r.status == 200
    finally:
        process.stop()


def test_web_config_enables_tls_and_basic_auth(
    tmp_path: Path, listener: int, closed_port: int
) -> None:
    cert, key = certs.issue("127.0.0.1", "localhost")
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    path = tmp_path / "config.yaml"
    path.write_text(config_text(listener, closed_port))
    port = free_port()
    process = ExporterProcess(path, [f"--web.config.file={web}"], port=port)
    context = ssl.create_default_context(cafile=certs.ca_pem_path())

    def fetch(auth: str | None) -> int:
        request = urllib.request.Request(f"https://127.0.0.1:{port}/metrics")
        if auth:
            request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(request, context=context, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        with pytest.raises(RuntimeError):
            process.start(ready_timeout=3)  # plain-HTTP readiness polling cannot pass
        assert fetch(None) == 401
        assert fetch("prometheus:wrong") == 401
        assert fetch("prometheus:s3cret") == 200
        assert fetch("prometheus:s3cret") == 200  # remembered, not re-hashed
    finally:
        process.stop()


def test_bad_web_config_is_a_usage_error(tmp_path: Path, listener: int, closed_port: int) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  prometheus: plaintext\n")
    path = tmp_path / "config.yaml"
    path.write_text(config_text(listener, closed_port))
    process = ExporterProcess(path, [f"--web.config.file={web}"])
    with pytest.raises(RuntimeError, match="exited 2"):
        process.start()
    assert "must be a bcrypt hash" in process.logs()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("basic_auth_users: [prometheus]\n", "basic_auth_users: must be a mapping"),
        ("http_server_config: {headers: [X-A]}\n", "headers: must be a mapping"),
        ("http_server_config: [headers]\n", "http_server_config: must be a mapping"),
        ("tls_server_config: {cert_file: [a], key_file: b}\n", "cert_file: must be a string"),
    ],
)
def test_web_config_of_the_wrong_shape_is_a_usage_error_not_a_traceback(
    tmp_path: Path, text: str, message: str
) -> None:
    web = tmp_path / "web.yml"
    web.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "exporter", f"--web.config.file={web}",
         f"--config.file={REPO / 'config.yaml'}", "--web.listen-address=127.0.0.1:0"],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@contextlib.contextmanager
def serving(exporter: Exporter, web_config: WebConfig | None = None) -> Iterator[WebServer]:
    """The web server on an event loop of its own in a thread, so that the test can be a
    plain blocking client."""
    config = web_config or WebConfig()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> WebServer:
        web = WebServer(exporter, ["127.0.0.1:0"], lambda: config)
        await web.start()
        return web

    web = asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    try:
        yield web
    finally:
        asyncio.run_coroutine_threadsafe(web.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@contextlib.contextmanager
def _in_process_web(tmp_path: Path, listener: int, closed_port: int) -> Iterator[WebServer]:
    path = tmp_path / "config.yaml"
    path.write_text(config_text(listener, closed_port))
    with serving(Exporter(str(path))) as web:
        yield web


def test_a_client_dripping_its_request_head_is_cut_at_the_head_deadline(
    tmp_path: Path, listener: int, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection_module, "HEAD_DEADLINE", 1.0)
    with (
        _in_process_web(tmp_path, listener, closed_port) as web,
        socket.create_connection(("127.0.0.1", web.ports[0]), timeout=5) as sock,
    ):
        sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 4.0 and not closed:
            time.sleep(0.2)  # each byte well within the idle timeout
            try:
                sock.sendall(b"X")
            except OSError:
                closed = True
                break
            readable, _, _ = select.select([sock], [], [], 0)
            closed = bool(readable) and sock.recv(1024) == b""
        assert closed, "the server kept reading a request that never ends"
        assert time.monotonic() - started < 2.5


def test_a_post_body_is_not_taken_for_the_next_request(
    tmp_path: Path, listener: int, closed_port: int
) -> None:
    with _in_process_web(tmp_path, listener, closed_port) as web:
        connection = http.client.HTTPConnection("127.0.0.1", web.ports[0], timeout=5)
        connection.request("POST", "/-/nothing", body=b"GET /evil HTTP/1.1\r\n\r\n")
        response = connection.getresponse()
        response.read()
        assert response.status == 404
        connection.request("GET", "/-/healthy")
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"Healthy\n")
        connection.close()


def test_a_hung_check_holding_the_only_slot_does_not_block_probe(
    tmp_path: Path, listener: int
) -> None:
    """A run gives its start slot back once it waits on the network: a probe of a healthy
    check is answered at once, even with --probe.concurrency=1 and a hung neighbour."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    path = tmp_path / "config.yaml"
    path.write_text(
        "bogons: []\nservices:\n  s:\n    checks:\n"
        f'      - {{name: hung, kind: tls, target: "127.0.0.1:{silent.getsockname()[1]}", '
        "timeout: 9s, interval: 10s}\n"
        f'      - {{name: fast, kind: tcp, target: "127.0.0.1:{listener}", '
        "timeout: 100ms, interval: 10s}\n"
    )
    process = ExporterProcess(path, ["--probe.concurrency=1"]).start()
    try:
        started = time.monotonic()
        status, body = process.get("/probe?service=s&check=fast", timeout=15)
        assert status == 200 and "verdict: ok" in body, body
        assert time.monotonic() - started < 3.0
    finally:
        process.stop()
        silent.close()


def test_a_plain_http_client_on_a_tls_port_prints_no_traceback(
    tmp_path: Path, listener: int, closed_port: int, capfd: pytest.CaptureFixture[str]
) -> None:
    cert, key = certs.issue("127.0.0.1", "localhost")
    web_yml = tmp_path / "web.yml"
    web_yml.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    path = tmp_path / "config.yaml"
    path.write_text(config_text(listener, closed_port))
    with serving(Exporter(str(path)), load_web_config(str(web_yml))) as web:
        with socket.create_connection(("127.0.0.1", web.ports[0]), timeout=5) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            with contextlib.suppress(OSError):
                while sock.recv(1024):
                    pass
        time.sleep(0.2)
    assert "Traceback" not in capfd.readouterr().err
