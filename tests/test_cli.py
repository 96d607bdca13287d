"""The command line of CONTRACT.md: --config.check, --once with its exit codes and outputs,
--version, and configuration errors printed as FILE:LINE: key.path: message."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from exporter import __version__, logs

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def write_config(tmp_path: Path, open_port: int, closed: int) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
defaults: {{interval: 10s, timeout: 2s}}
services:
  open:
    checks: [{{name: tcp, kind: tcp, target: "127.0.0.1:{open_port}"}}]
  closed:
    checks: [{{name: tcp, kind: tcp, target: "127.0.0.1:{closed}"}}]
"""
    )
    return path


def test_version_prints_the_version() -> None:
    done = run("--version")
    assert done.returncode == 0
    assert __version__ in done.stdout


def test_shipped_config_is_valid() -> None:
    done = run("--config.check", "--config.file=config.yaml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("config.yaml: OK")


def test_config_check_prints_every_problem_with_file_and_line_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "defaults:\n  timeout: 20s\n  interval: 10s\n"
        "services:\n  x:\n    checks:\n      - {name: a, kind: tcp, target: nohost}\n"
        "      - {name: b, kind: warp, target: x}\n"
    )
    done = run("--config.check", f"--config.file={bad}")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"{bad}:2: defaults.timeout: must be shorter than the interval (10s)",
        f"{bad}:7: services.x.checks[0].target: invalid target 'nohost': "
        "a port is required (host:port)",
        f"{bad}:8: services.x.checks[1].kind: unsupported kind 'warp' "
        "(supported: dns, tcp, tls, http, transfer, stun, quic)",
    ]


def test_missing_config_file_is_a_configuration_error(tmp_path: Path) -> None:
    done = run("--config.check", f"--config.file={tmp_path / 'nope.yaml'}")
    assert done.returncode == 2
    assert "cannot read configuration" in done.stderr and "Traceback" not in done.stderr


def test_bad_flag_is_a_usage_error() -> None:
    assert run("--no-such-flag").returncode == 2


def test_once_table_shows_each_verdict_and_exits_1_when_any_fails(
    tmp_path: Path, listener: int, closed_port: int
) -> None:
    done = run("--once", f"--config.file={write_config(tmp_path, listener, closed_port)}")
    assert done.returncode == 1, done.stderr
    rows = [line.split() for line in done.stdout.strip().splitlines()]
    assert rows[0][:5] == ["SERVICE", "CHECK", "KIND", "VERDICT", "DURATION"]
    verdicts = {row[0]: row[3] for row in rows[1:]}
    assert verdicts == {"open": "ok", "closed": "tcp_refused"}


def test_once_selects_services_and_exits_0_when_all_ok(
    tmp_path: Path, listener: int, closed_port: int
) -> None:
    config = write_config(tmp_path, listener, closed_port)
    done = run("--once", f"--config.file={config}", "--service=open", "--output=json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert [(row["service"], row["verdict"]) for row in document] == [("open", "ok")]
    assert document[0]["address"] == "127.0.0.1"
    assert "connect" in document[0]["phases"]


def test_once_with_an_unknown_service_is_a_usage_error(
    tmp_path: Path, listener: int, closed_port: int
) -> None:
    config = write_config(tmp_path, listener, closed_port)
    done = run("--once", f"--config.file={config}", "--service=nope")
    assert done.returncode == 2
    assert "unknown service 'nope'" in done.stderr


def test_logfmt_quotes_values_with_control_characters() -> None:
    """A carriage return or another control character from a target's error text must not
    end up raw in a log line, where it could forge or garble another line."""
    formatter = logs.LogfmtFormatter()
    record = logging.LogRecord("exporter", logging.INFO, "", 0, "a\rb\x1b[2J", (), None)
    line = formatter.format(record)
    assert "\r" not in line and "\x1b" not in line
    assert 'msg="a\\rb\\u001b[2J"' in line
