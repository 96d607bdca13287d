"""The evidence journal (--storage.path): "since" survives restarts and kill -9, the
retention bound holds, torn or corrupt lines are skipped, an unusable directory is exit 2,
/api/v1/changes serves and filters it; verdict and vantage changes are logged with fields."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.config import load_text
from exporter.journal import FileJournal, rfc3339
from exporter.metrics import ResultStore
from exporter.result import Result
from exporter.verdicts import Verdict
from peers.exporterproc import REPO, ExporterProcess
from peers.listeners import accepting_port, free_port

SINCE = "reachability_check_last_change_timestamp_seconds"


def tcp_config(path: Path, checks: dict[str, int], interval: str = "200ms") -> Path:
    lines = [f"defaults: {{interval: {interval}, timeout: 150ms}}", "services:"]
    for name, port in checks.items():
        lines += [f"  {name}:", "    checks:",
                  f'      - {{name: tcp, kind: tcp, target: "127.0.0.1:{port}"}}']  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def since(exporter: ExporterProcess, service: str) -> float | None:
    return exporter.value(SINCE, service=service, check="tcp", kind="tcp")


def journal_lines(storage: Path) -> list[str]:
    return [line for f in sorted(storage.glob("journal-*.jsonl"))
            for line in f.read_text().splitlines()]  # fmt: skip


def changes(exporter: ExporterProcess, query: str = "") -> list[dict[str, object]]:
    status, body = exporter.get("/api/v1/changes" + query)
    assert status == 200, body
    records: list[dict[str, object]] = json.loads(body)["records"]
    return records


@contextlib.contextmanager
def flapping_port(period: float = 0.15) -> Iterator[int]:
    """A port that accepts for `period`, refuses for `period`, and so on: a check on it
    changes its verdict (and writes the journal) on almost every run."""
    with accepting_port() as port:
        pass  # only to pick a port that is free; the thread below takes it over
    stop = threading.Event()

    def toggle() -> None:
        while not stop.is_set():
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                with contextlib.suppress(OSError):
                    sock.bind(("127.0.0.1", port))
                    sock.listen(64)
                stop.wait(period)
            stop.wait(period)

    thread = threading.Thread(target=toggle, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join()


def test_blocked_since_survives_kill_9_during_journal_writes(tmp_path: Path) -> None:
    storage = tmp_path / "data"
    with flapping_port() as flapping:
        checks = {f"down{i}": free_port() for i in range(20)} | {"flap": flapping}
        config = tcp_config(tmp_path / "config.yaml", checks)
        exporter = ExporterProcess(config, [f"--storage.path={storage}"]).start()
        try:
            exporter.wait_for(lambda: all(since(exporter, f"down{i}") for i in range(20)))
            before = {f"down{i}": since(exporter, f"down{i}") for i in range(20)}
            # The flapping check keeps the writer busy: kill it in the middle of that.
            exporter.wait_for(lambda: len(journal_lines(storage)) > 30)
        finally:
            exporter.kill()
        written = len(journal_lines(storage))
        restarted = ExporterProcess(config, [f"--storage.path={storage}"]).start()
        try:
            restarted.wait_for(lambda: all(since(restarted, f"down{i}") for i in range(20)))
            time.sleep(0.5)  # a few more runs: still the same verdict, still the same since
            after = {f"down{i}": since(restarted, f"down{i}") for i in range(20)}
            for name, value in before.items():
                assert after[name] == pytest.approx(value, abs=1e-5), name
            assert "journal restored" in restarted.logs()
            # The restart itself wrote no record for the checks that did not change.
            down = [json.loads(line) for line in journal_lines(storage)[written:]
                    if line.strip() and '"down' in line]  # fmt: skip
            assert down == []
        finally:
            assert restarted.stop() == 0, restarted.logs()


def test_a_check_whose_verdict_changed_over_a_restart_starts_a_new_since(
    tmp_path: Path,
) -> None:
    storage = tmp_path / "data"
    port = free_port()
    config = tcp_config(tmp_path / "config.yaml", {"svc": port}, interval="300ms")
    first = ExporterProcess(config, [f"--storage.path={storage}"]).start()
    try:
        first.wait_for(lambda: first.verdict("svc", "tcp") == "tcp_refused")
        old = since(first, "svc")
    finally:
        first.stop()
    with accepting_port() as open_port:
        tcp_config(config, {"svc": open_port}, interval="300ms")
        second = ExporterProcess(config, [f"--storage.path={storage}"]).start()
        try:
            second.wait_for(lambda: second.verdict("svc", "tcp") == "ok")
            assert (since(second, "svc") or 0) > (old or 0)
            _, body = second.get("/api/v1/changes?service=svc&limit=1")
            record = json.loads(body)["records"][0]
            # The change is from the verdict before the restart, not from nothing.
            assert (record["from"], record["to"]) == ("tcp_refused", "ok")
        finally:
            second.stop()


def test_torn_and_corrupt_journal_lines_are_skipped_at_start(tmp_path: Path) -> None:
    storage = tmp_path / "data"
    storage.mkdir()
    port = free_port()
    week_ago = time.time() - 7 * 86400
    record = {"time": rfc3339(week_ago), "type": "verdict", "service": "svc", "check": "tcp",
              "kind": "tcp", "target": f"127.0.0.1:{port}", "from": None,
              "to": "tcp_refused", "evidence": {"verdict": "tcp_refused"}}  # fmt: skip
    (storage / "journal-00000001.jsonl").write_text(
        "this is not json\n"
        + json.dumps(record) + "\n"
        + '["a list, not a record"]\n'
        + '{"time": "yesterday", "service": "svc"}\n'
        + json.dumps({**record, "to": "ok"})[:40]  # torn: kill -9 in the middle of a line
    )  # fmt: skip
    config = tcp_config(
        tmp_path / "config.yaml", {"svc": port, "other": free_port()}, interval="300ms"
    )
    exporter = ExporterProcess(config, [f"--storage.path={storage}"]).start()
    try:
        exporter.wait_for(lambda: exporter.verdict("svc", "tcp") == "tcp_refused")
        exporter.wait_for(lambda: exporter.verdict("other", "tcp") == "tcp_refused")
        assert since(exporter, "svc") == pytest.approx(week_ago, abs=1e-5)
        assert "journal line skipped" in exporter.logs()
    finally:
        assert exporter.stop() == 0
    # The first new record (other's first verdict) is a line of its own after the torn one.
    lines = journal_lines(storage)
    assert len(lines) == 6
    assert json.loads(lines[-1])["service"] == "other"


def test_the_journal_stays_within_its_retention_size_dropping_the_oldest(
    tmp_path: Path,
) -> None:
    retention = 64 * 1024
    journal = FileJournal(tmp_path, retention)
    for number in range(3000):
        journal.append({"time": rfc3339(time.time()), "type": "verdict", "n": number,
                        "evidence": Result(Verdict.TCP_REFUSED, detail="x" * 100)})  # fmt: skip
    journal.close()
    segments = list(tmp_path.glob("journal-*.jsonl"))
    total = sum(p.stat().st_size for p in segments)
    assert total <= retention
    assert total >= retention * 0.8  # bounded, not emptied
    kept = [record["n"] for record in FileJournal(tmp_path, retention).oldest_first()]
    assert kept[-1] == 2999 and kept == sorted(kept)
    assert kept[0] > 0  # the oldest went first
    assert kept == list(range(kept[0], 3000))  # and nothing in between


def test_an_unwritable_storage_path_is_exit_2_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "exporter", f"--config.file={REPO / 'config.yaml'}",
         "--web.listen-address=127.0.0.1:0", f"--storage.path={blocker / 'data'}"],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--storage.path=" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_empty_storage_path_keeps_nothing_on_disk(tmp_path: Path) -> None:
    config = tcp_config(tmp_path / "config.yaml", {"svc": free_port()})
    exporter = ExporterProcess(config, ["--storage.path="]).start()
    try:
        exporter.wait_for(lambda: exporter.verdict("svc", "tcp"))
        status, body = exporter.get("/api/v1/changes")
        assert status == 200 and json.loads(body)["records"][0]["to"] == "tcp_refused"
    finally:
        exporter.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.log", "config.yaml"]


def test_changes_api_is_newest_first_filtered_and_rejects_bad_parameters(
    tmp_path: Path,
) -> None:
    with accepting_port() as control:
        config = tcp_config(tmp_path / "config.yaml", {"a": free_port(), "b": control})
        config.write_text(config.read_text().replace("  b:\n", "  b:\n    role: control\n"))
        exporter = ExporterProcess(config).start()
        try:
            exporter.wait_for(lambda: exporter.verdict("a", "tcp") and exporter.verdict("b", "tcp"))
            exporter.wait_for(
                lambda: len(json.loads(exporter.get("/api/v1/changes")[1])["records"]) >= 3
            )
            records = json.loads(exporter.get("/api/v1/changes")[1])["records"]
            times = [r["time"] for r in records]
            assert times == sorted(times, reverse=True)
            assert {r["type"] for r in records} == {"verdict", "vantage"}
            vantage = next(r for r in records if r["type"] == "vantage")
            assert (vantage["from"], vantage["to"]) == ("unknown", "online")
            only_a = json.loads(exporter.get("/api/v1/changes?service=a&check=tcp")[1])["records"]
            assert [(r["service"], r["to"]) for r in only_a] == [("a", "tcp_refused")]
            a = only_a[0]
            assert a["kind"] == "tcp" and a["target"].startswith("127.0.0.1:")
            assert a["from"] is None and a["evidence"]["verdict"] == "tcp_refused"
            assert a["time"].endswith("Z")
            later = rfc3339(time.time() + 60)
            assert json.loads(exporter.get(f"/api/v1/changes?since={later}")[1])["records"] == []
            one = json.loads(exporter.get("/api/v1/changes?limit=1")[1])["records"]
            assert one == records[:1]
            for bad in ("limit=0", "limit=x", "since=yesterday", "service=a&service=b", "nope=1"):
                status, body = exporter.get(f"/api/v1/changes?{bad}")
                assert status == 400, bad
                assert json.loads(body)["error"], bad
        finally:
            exporter.stop()


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_verdict_and_vantage_changes_are_logged_at_info_as_fields(
    tmp_path: Path, log_format: str
) -> None:
    port = free_port()
    config = tcp_config(tmp_path / "config.yaml", {"svc": port})
    config.write_text(config.read_text().replace("  svc:\n", "  svc:\n    role: control\n"))
    exporter = ExporterProcess(config, [f"--log.format={log_format}", "--log.level=info"])
    exporter.start()
    try:
        exporter.wait_for(lambda: "vantage state changed" in exporter.logs())
    finally:
        exporter.stop()
    lines = exporter.logs().splitlines()
    change = next(line for line in lines if "verdict changed" in line)
    vantage = next(line for line in lines if "vantage state changed" in line)
    if log_format == "json":
        entry = json.loads(change)
        assert entry["msg"] == "verdict changed" and entry["level"] == "info"
        assert (entry["service"], entry["check"], entry["to"]) == ("svc", "tcp", "tcp_refused")
        assert "from" in entry and "Connect call failed" in entry["detail"]
        entry = json.loads(vantage)
        assert (entry["from"], entry["to"]) == ("unknown", "offline")
    else:
        assert 'msg="verdict changed"' in change
        assert " service=svc check=tcp " in change and " to=tcp_refused " in change
        assert ' detail="' in change
        assert "from=unknown to=offline" in vantage


def test_store_keeps_a_restored_since_when_the_first_run_agrees() -> None:
    config = load_text("services:\n  s:\n    checks:\n      - {name: c, kind: tcp, target: h:1}\n")
    store = ResultStore()
    seen: list[tuple[Verdict | None, Verdict]] = []
    store.observer = lambda check, previous, result: seen.append((previous, result.verdict))
    store.restore(("s", "c"), Verdict.TCP_REFUSED, 1000.0)
    store.apply_config(config)
    check = next(config.checks())
    store.record(check, Result(Verdict.TCP_REFUSED, finished=5000.0))
    assert store.snapshot().states[("s", "c")].since == 1000.0
    # Told (the vantage state may depend on it), as no change: previous is the new verdict.
    assert seen == [(Verdict.TCP_REFUSED, Verdict.TCP_REFUSED)]
    seen.clear()
    store.record(check, Result(Verdict.TCP_REFUSED, finished=5500.0))
    assert seen == []
    store.record(check, Result(Verdict.OK, finished=6000.0))
    assert store.snapshot().states[("s", "c")].since == 6000.0
    assert seen == [(Verdict.TCP_REFUSED, Verdict.OK)]
    assert store.snapshot().states[("s", "c")].since == 6000.0


def test_a_check_not_yet_run_after_a_restart_shows_what_it_last_saw(tmp_path: Path) -> None:
    storage = tmp_path / "data"
    storage.mkdir()
    day_ago = time.time() - 86400
    record = {"time": rfc3339(day_ago), "type": "verdict", "service": "slow", "check": "tcp",
              "kind": "tcp", "target": "127.0.0.1:1", "from": "ok", "to": "tcp_timeout",
              "evidence": {"verdict": "tcp_timeout"}}  # fmt: skip
    (storage / "journal-00000001.jsonl").write_text(json.dumps(record) + "\n")
    # Two checks on 1h: the first runs at once, the second only half an hour later.
    config = tcp_config(
        tmp_path / "config.yaml", {"first": free_port(), "slow": free_port()}, interval="1h"
    )
    exporter = ExporterProcess(config, [f"--storage.path={storage}"]).start()
    try:
        exporter.wait_for(lambda: exporter.verdict("first", "tcp"))
        document = json.loads(exporter.get("/api/v1/status")[1])
        slow = next(s for s in document["services"] if s["name"] == "slow")["checks"][0]
        assert slow["verdict"] is None  # not run yet: nothing is claimed about now
        assert slow["history"] == [
            {"verdict": "tcp_timeout", "verdict_text": "connections silently dropped",
             "since": pytest.approx(day_ago, abs=1e-5)}
        ]  # fmt: skip
    finally:
        exporter.stop()


def test_the_vantage_state_keeps_its_since_across_a_restart(tmp_path: Path) -> None:
    storage = tmp_path / "data"
    config = tcp_config(tmp_path / "config.yaml", {"ctl": free_port()}, interval="300ms")
    config.write_text(config.read_text().replace("  ctl:\n", "  ctl:\n    role: control\n"))

    def vantage(exporter: ExporterProcess) -> dict[str, object]:
        state: dict[str, object] = json.loads(exporter.get("/api/v1/status")[1])["vantage"]
        return state

    first = ExporterProcess(config, [f"--storage.path={storage}"]).start()
    try:
        first.wait_for(lambda: vantage(first)["state"] == "offline")
        since = vantage(first)["since"]
    finally:
        first.stop()
    time.sleep(0.2)
    second = ExporterProcess(config, [f"--storage.path={storage}"]).start()
    try:
        second.wait_for(lambda: vantage(second)["state"] == "offline")
        assert vantage(second)["since"] == pytest.approx(since, abs=1e-5)
    finally:
        second.stop()
