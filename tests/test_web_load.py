"""The web side under load cannot delay a probe or change a verdict (README: "Under load"):
half-open connections past the connection limit and the open-files limit, many clients at
once, unfinished requests, /probe floods, gzip and the telemetry path. Each runs the real
exporter process against real clients on loopback, scaled down to a few seconds."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from exporter import fdlimit
from peers import webservers
from peers.exporterproc import REPO, ExporterProcess
from peers.webclients import half_open


def tcp_config(port: int, interval: str = "500ms", timeout: str = "300ms") -> str:
    return (
        f"defaults: {{interval: {interval}, timeout: {timeout}}}\nbogons: []\nservices:\n"
        f'  healthy:\n    checks:\n      - {{name: tcp, kind: tcp, target: "127.0.0.1:{port}"}}\n'
    )


def runs(process: ExporterProcess) -> float:
    value = process.value(
        "reachability_check_runs_total", service="healthy", check="tcp", kind="tcp"
    )
    return value or 0.0


def timed_get(process: ExporterProcess, path: str, timeout: float = 5.0) -> tuple[int, float]:
    started = time.monotonic()
    status, _ = process.get(path, timeout=timeout)
    return status, time.monotonic() - started


@pytest.fixture
def healthy(tmp_path: Path, listener: int) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(tcp_config(listener))
    return path


def test_half_open_connections_past_every_limit_leave_metrics_answering_and_checks_ok(
    healthy: Path,
) -> None:
    # 100 descriptors in all: the probes' reserve leaves the web side 51 of them; 200
    # clients that never finish a request try to take more (and all of them, before).
    process = ExporterProcess(
        healthy, ["--probe.concurrency=4"], prefix=["prlimit", "--nofile=100:100"]
    ).start()
    try:
        process.wait_for(lambda: process.verdict("healthy", "tcp") == "ok")
        with half_open(process.port, 200):
            time.sleep(3.0)  # SYNs dropped by a short backlog are retried after 1 s, 3 s
            before = runs(process)
            started = time.monotonic()
            slowest = 0.0
            while time.monotonic() - started < 4.0:
                status, took = timed_get(process, "/metrics")
                assert status == 200
                slowest = max(slowest, took)
                assert process.verdict("healthy", "tcp") == "ok"
                time.sleep(0.2)
            after = runs(process)
        # 4 s at 500 ms: 8 runs due; a lost run or two is the machine, not the web side.
        assert after - before >= 6, process.logs()[-3000:]
        assert slowest < 2.0
        assert "Too many open files" not in process.logs()
    finally:
        process.stop()


def _closed_by_server(sock: socket.socket, wait: float = 0.0) -> bool:
    """True when the server has closed `sock` (or does within `wait` seconds) without a
    byte of answer."""
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except (BlockingIOError, TimeoutError):
        return False
    except ConnectionResetError:
        return True  # closed with the unread request in its buffer


def test_at_the_connection_limit_a_new_unfinished_request_is_closed_not_a_waiting_one(
    healthy: Path,
) -> None:
    # A flood of unfinished requests is turned away at the door, which costs the exporter an
    # accept and a close: evicting a waiting connection for each newcomer costs a whole
    # connection's setup and teardown, and slows the accepts a real scrape waits behind.
    process = ExporterProcess(healthy, ["--web.max-connections=4"]).start()
    waiting: list[socket.socket] = []
    try:
        for _ in range(4):
            sock = socket.create_connection(("127.0.0.1", process.port), timeout=5)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            waiting.append(sock)
        time.sleep(0.5)  # all four accepted and read
        with socket.create_connection(("127.0.0.1", process.port), timeout=5) as newcomer:
            newcomer.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            assert _closed_by_server(newcomer, wait=5.0)
        time.sleep(0.3)
        assert not any(_closed_by_server(sock) for sock in waiting)
        # A whole request still gets in, in place of the longest waiting one.
        status, took = timed_get(process, "/-/healthy")
        assert status == 200 and took < 2.0
        time.sleep(0.3)
        assert [_closed_by_server(sock) for sock in waiting] == [True, False, False, False]
    finally:
        for sock in waiting:
            sock.close()
        process.stop()


def test_two_hundred_clients_connecting_at_once_all_get_answers(healthy: Path) -> None:
    process = ExporterProcess(healthy).start()

    async def client() -> tuple[float, bytes]:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", process.port)
        connected = time.monotonic() - started
        writer.write(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 15)
        writer.close()
        return connected, answer

    async def everyone() -> list[tuple[float, bytes]]:
        return await asyncio.gather(*(client() for _ in range(200)))

    try:
        results = asyncio.run(everyone())
    finally:
        process.stop()
    # A dropped SYN is retried after 1 s: every handshake done sooner means none was dropped.
    assert max(connected for connected, _ in results) < 0.9
    assert all(answer.startswith(b"HTTP/1.1 200") for _, answer in results)


def test_an_unfinished_request_closed_by_the_client_is_not_executed(healthy: Path) -> None:
    process = ExporterProcess(healthy).start()
    try:
        good = healthy.read_text()
        healthy.write_text(good + "  broken: [\n")  # a reload would fail, and show it
        for unfinished in (
            b"POST /-/reload HTTP/1.1\r\nHost: x\r\n",  # the head never ends
            b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345",
        ):
            with socket.create_connection(("127.0.0.1", process.port), timeout=5) as sock:
                sock.sendall(unfinished)
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(5)
                assert sock.recv(1024) == b""  # closed without an answer
        time.sleep(0.5)
        assert process.value("reachability_exporter_config_last_reload_successful") == 1.0
        assert "reload failed" not in process.logs()
        # The complete request is executed: the observation above can fail.
        assert process.get("/-/reload", method="POST")[0] == 500
        assert process.value("reachability_exporter_config_last_reload_successful") == 0.0
    finally:
        process.stop()


def _slow_ok(sock: socket.socket) -> None:
    """An HTTP server that takes a second to answer 200."""
    sock.settimeout(10)
    if webservers.read_head(sock) is None:
        return
    time.sleep(1.0)
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


@pytest.fixture
def slow_server() -> Iterator[tuple[int, list[int]]]:
    handler, count = webservers.counted(_slow_ok)
    with webservers.serve(handler) as port:
        yield port, count


def _probe_config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "config.yaml"
    checks = "".join(
        f'      - {{name: {name}, kind: http, target: "http://127.0.0.1:{port}/{name}"}}\n'
        for name in ("a", "b")
    )
    path.write_text(
        "defaults: {interval: 1h, timeout: 5s}\nbogons: []\n"
        f"services:\n  slow:\n    checks:\n{checks}"
    )
    return path


def test_concurrent_probes_of_one_check_share_one_run(
    tmp_path: Path, slow_server: tuple[int, list[int]]
) -> None:
    port, count = slow_server
    process = ExporterProcess(_probe_config(tmp_path, port)).start()
    try:
        process.wait_for(lambda: count[0] >= 1)  # the first scheduled run (b starts in 30 min)
        time.sleep(1.5)
        before = count[0]
        with ThreadPoolExecutor(10) as pool:
            answers = list(
                pool.map(lambda _: process.get("/probe?service=slow&check=a"), range(10))
            )
        assert all(status == 200 and "verdict: ok" in text for status, text in answers)
        assert count[0] - before == 1
    finally:
        process.stop()


def test_probes_past_the_global_cap_answer_503_at_once(
    tmp_path: Path, slow_server: tuple[int, list[int]]
) -> None:
    port, _ = slow_server
    # --probe.concurrency=8: one ad-hoc run at a time.
    process = ExporterProcess(_probe_config(tmp_path, port), ["--probe.concurrency=8"]).start()
    try:
        first: list[tuple[int, str]] = []
        thread = threading.Thread(
            target=lambda: first.append(process.get("/probe?service=slow&check=a"))
        )
        thread.start()
        time.sleep(0.3)
        status, took = timed_get(process, "/probe?service=slow&check=b")
        thread.join()
        assert status == 503 and took < 0.5
        assert first[0][0] == 200
    finally:
        process.stop()


def test_gzip_metrics_decompress_to_exactly_the_plain_metrics(healthy: Path) -> None:
    process = ExporterProcess(healthy).start()
    try:
        process.wait_for(lambda: runs(process) >= 1)

        def fetch(encoding: str) -> tuple[bytes, str | None]:
            request = urllib.request.Request(
                process.url + "/metrics", headers={"Accept-Encoding": encoding}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.read(), response.headers.get("Content-Encoding")

        # Scrapes in flight together share one rendering: the same moment, compressed or not.
        with ThreadPoolExecutor(2) as pool:
            for _ in range(20):
                zipped, plain = pool.map(fetch, ("gzip", "identity"))
                if gzip.decompress(zipped[0]) == plain[0]:
                    break
        assert zipped[1] == "gzip" and plain[1] is None
        assert gzip.decompress(zipped[0]) == plain[0]
    finally:
        process.stop()


def test_telemetry_path_moves_the_metrics(healthy: Path) -> None:
    process = ExporterProcess(healthy, ["--web.telemetry-path=/x/metrics"]).start()
    try:
        status, text = process.get("/x/metrics")
        assert status == 200 and "reachability_exporter_build_info" in text
        assert process.get("/metrics")[0] == 404
    finally:
        process.stop()


def _soft_open_files(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no open files limit")


def test_the_open_files_limit_is_raised_to_what_the_web_side_and_probes_need(
    healthy: Path,
) -> None:
    process = ExporterProcess(
        healthy, ["--web.max-connections=2000"], prefix=["prlimit", "--nofile=256:8192"]
    ).start()
    try:
        assert process.proc is not None
        assert _soft_open_files(process.proc.pid) >= fdlimit.needed(2000, 64)
    finally:
        process.stop()


def test_probes_out_of_file_descriptors_are_the_exporters_error_not_a_tcp_verdict(
    tmp_path: Path,
) -> None:
    # Far fewer descriptors than the probes need: tls checks against a server that never
    # answers the ClientHello hold theirs until the timeout, and the rest find none.
    with webservers.serve(webservers.silent) as port:
        _out_of_descriptors(tmp_path, port)


def _out_of_descriptors(tmp_path: Path, port: int) -> None:
    checks = "".join(
        f'      - {{name: c{i}, kind: tls, target: "127.0.0.1:{port}"}}\n' for i in range(100)
    )
    path = tmp_path / "config.yaml"
    path.write_text(
        "defaults: {interval: 10s, timeout: 2s}\nbogons: []\n"
        f"services:\n  many:\n    checks:\n{checks}"
    )
    # --once runs them together (as a busy schedule would), so that the descriptors run out.
    result = subprocess.run(
        ["prlimit", "--nofile=30:30", sys.executable, "-m", "exporter", "--once",
         "--output=json", f"--config.file={path}"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    verdicts = {row["verdict"] for row in json.loads(result.stdout)["checks"]}
    assert "error" in verdicts, verdicts
    assert "tcp_error" not in verdicts
    assert "ran out of resources" in result.stderr
