"""The command line (README "Command line"): --config.check, --once with its exit codes and
outputs, --version, flags checked together, where the configuration is found, and
configuration errors printed as FILE:LINE: key.path: message."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter import __version__, cli, logs
from peers.weakpeers import WeakResolver, counting_server

REPO = Path(__file__).resolve().parents[1]
# A flag that is accepted when it should not be starts a server: give up long before 60 s.
USAGE_TIMEOUT = 20


def run(*args: str, cwd: Path = REPO, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def table(stdout: str) -> tuple[str, list[list[str]], str]:
    """--once's table output: the vantage line, the rows (header first), the summary line."""
    vantage, rest = stdout.split("\n\n", 1)
    body, summary = rest.rstrip("\n").rsplit("\n\n", 1)
    return vantage, [line.split() for line in body.splitlines()], summary


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
    _, rows, _ = table(done.stdout)
    assert rows[0][:5] == ["SERVICE", "CHECK", "KIND", "VERDICT", "DURATION"]
    verdicts = {row[0]: row[3] for row in rows[1:]}
    assert verdicts == {"open": "ok", "closed": "tcp_refused"}


def test_once_selects_services_and_exits_0_when_all_ok(
    tmp_path: Path, listener: int, closed_port: int
) -> None:
    config = write_config(tmp_path, listener, closed_port)
    done = run("--once", f"--config.file={config}", "--service=open", "--output=json")
    assert done.returncode == 0, done.stderr
    checks = json.loads(done.stdout)["checks"]
    assert [(row["service"], row["verdict"]) for row in checks] == [("open", "ok")]
    assert checks[0]["address"] == "127.0.0.1"
    assert "connect" in checks[0]["phases"]


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


# ---- Flags ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["--config.f=config.yaml", "--config.check"], ["--once", "--serv=whatsapp"]],
    ids=["config.f", "serv"],
)
def test_abbreviated_flags_are_usage_errors(args: list[str]) -> None:
    done = run(*args, timeout=USAGE_TIMEOUT)
    assert done.returncode == 2
    assert "unrecognized arguments" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--service=whatsapp"], "--service only makes sense with --once"),
        (["--output=json"], "--output only makes sense with --once"),
        (["--once", "--web.listen-address=garbage"], "invalid listen address 'garbage'"),
        (["--once", "--config.check"], "--once and --config.check exclude each other"),
        (["--once", "--probe.concurrency=0"], "--probe.concurrency must be at least 1"),
    ],
    ids=["service", "output", "once-listen", "once-check", "concurrency"],
)
def test_flags_that_make_no_sense_together_are_usage_errors(args: list[str], message: str) -> None:
    """Without --once these used to start a server silently; with it, a garbage listen
    address was accepted."""
    done = run(*args, timeout=USAGE_TIMEOUT)
    assert done.returncode == 2, done.stdout
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_every_flag_has_help_and_every_value_flag_its_default() -> None:
    for action in cli.build_parser()._actions:
        if action.dest in ("help", "version"):
            continue
        flag = action.option_strings[0]
        assert action.help, f"{flag} has no help text"
        if action.nargs != 0:  # takes a value, so it has a default to show
            assert "(default:" in action.help, f"{flag} does not show its default"
    text = run("--help").stdout
    assert "(default: info)" in text and "(default: logfmt)" in text


# ---- Where the configuration is found -------------------------------------------------------


def run_with_etc(
    tmp_path: Path, installed: str | None, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run the exporter from an empty directory in a private mount namespace whose /etc is
    an overlay, holding `installed` as /etc/reachability-exporter/config.yaml (or no such
    directory), so that the machine's real /etc is neither read for it nor written."""
    if os.geteuid() != 0:
        pytest.skip("a private /etc overlay needs root (CI runs as root)")
    for name in ("upper", "work", "cwd"):
        (tmp_path / name).mkdir()
    etc_dir = Path(cli.INSTALLED_CONFIG).parent
    setup = [
        f"mount -t overlay overlay -o lowerdir=/etc,upperdir={tmp_path}/upper,"
        f"workdir={tmp_path}/work /etc",
        f"rm -rf {etc_dir}",
    ]
    if installed is not None:
        (tmp_path / "installed.yaml").write_text(installed)
        setup += [f"mkdir {etc_dir}", f"cp {tmp_path}/installed.yaml {cli.INSTALLED_CONFIG}"]
    script = " && ".join(setup) + ' && exec "$@"'
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is not installed"
    return subprocess.run(
        [unshare, "--mount", "sh", "-c", script, "sh", sys.executable, "-m", "exporter", *args],
        cwd=tmp_path / "cwd", capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def test_config_defaults_to_config_yaml_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "services:\n  a:\n    checks: [{name: t, kind: tcp, target: '127.0.0.1:1'}]\n"
    )
    done = run("--config.check", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("config.yaml: OK (1 services, 1 checks)")


def test_config_falls_back_to_the_installed_location_from_any_directory(tmp_path: Path) -> None:
    installed = "services:\n  a:\n    checks: [{name: t, kind: tcp, target: '127.0.0.1:1'}]\n"
    done = run_with_etc(tmp_path, installed, "--config.check")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{cli.INSTALLED_CONFIG}: OK (1 services, 1 checks)")


def test_missing_default_config_names_every_place_it_looked(tmp_path: Path) -> None:
    done = run_with_etc(tmp_path, None, "--config.check")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "config.yaml: cannot read configuration: not in the working directory "
        f"({tmp_path}/cwd/config.yaml) nor at {cli.INSTALLED_CONFIG}; give --config.file=FILE"
    )


def test_an_explicit_config_file_is_never_replaced_by_the_installed_one(tmp_path: Path) -> None:
    installed = "services:\n  a:\n    checks: [{name: t, kind: tcp, target: '127.0.0.1:1'}]\n"
    done = run_with_etc(tmp_path, installed, "--config.check", "--config.file=mine.yaml")
    assert done.returncode == 2
    assert done.stderr.startswith("mine.yaml: cannot read configuration")


# ---- --once: vantage state, concurrency, DNS pacing -------------------------------------------


def write_vantage_config(tmp_path: Path, control_port: int, closed: int) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
defaults: {{interval: 10s, timeout: 2s}}
services:
  ctl:
    role: control
    checks: [{{name: tcp, kind: tcp, target: "127.0.0.1:{control_port}"}}]
  closed:
    checks: [{{name: tcp, kind: tcp, target: "127.0.0.1:{closed}"}}]
"""
    )
    return path


def test_once_prints_the_vantage_state_first_in_the_table_and_in_json(
    tmp_path: Path, listener: int, closed_port: int
) -> None:
    config = write_vantage_config(tmp_path, listener, closed_port)
    done = run("--once", f"--config.file={config}")
    assert done.returncode == 1, done.stderr
    vantage, rows, summary = table(done.stdout)
    assert vantage == "VANTAGE online (controls: ctl ok)"
    assert {row[0]: row[3] for row in rows[1:]} == {"ctl": "ok", "closed": "tcp_refused"}
    assert summary == "SUMMARY 2 checks: 1 ok, 1 not ok"

    document = json.loads(run("--once", f"--config.file={config}", "--output=json").stdout)
    assert next(iter(document)) == "vantage"
    assert document["vantage"] == {
        "state": "online",
        "controls": [{"service": "ctl", "scope": "foreign", "verdict": "ok", "up": True}],
    }
    assert document["summary"] == {"checks": 2, "ok": 1, "not_ok": 1, "note": ""}


def test_once_says_the_verdicts_mean_nothing_when_the_vantage_is_offline(
    tmp_path: Path, closed_port: int
) -> None:
    config = write_vantage_config(tmp_path, closed_port, closed_port)
    done = run("--once", f"--config.file={config}", "--service=closed")
    assert done.returncode == 1, done.stderr
    vantage, rows, summary = table(done.stdout)
    # The control ran for the vantage state although only `closed` was selected.
    assert vantage == "VANTAGE offline (controls: ctl tcp_refused)"
    assert [row[0] for row in rows[1:]] == ["closed"]
    assert summary == (
        "SUMMARY 1 checks: 0 ok, 1 not ok; the vantage is offline (no control service is "
        "reachable): these verdicts say nothing about blocking"
    )
    document = json.loads(
        run("--once", f"--config.file={config}", "--service=closed", "--output=json").stdout
    )
    assert document["vantage"]["state"] == "offline"
    assert "say nothing about blocking" in document["summary"]["note"]


def test_once_honours_probe_concurrency(tmp_path: Path) -> None:
    """Six TLS handshakes that stall for the whole 1 s timeout: with --probe.concurrency=2
    at most two connections are open at once, and the run takes three rounds."""
    with counting_server() as (port, counts):
        checks = "\n".join(
            f'      - {{name: c{i}, kind: tls, target: "127.0.0.1:{port}", sni: x.test}}'
            for i in range(6)
        )
        config = tmp_path / "config.yaml"
        config.write_text(
            f"defaults: {{interval: 10s, timeout: 1s}}\nservices:\n  s:\n    checks:\n{checks}\n"
        )
        started = time.monotonic()
        done = run("--once", f"--config.file={config}", "--probe.concurrency=2")
        elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    _, rows, _ = table(done.stdout)
    assert {row[3] for row in rows[1:]} == {"tls_timeout"}
    assert counts["most"] == 2
    assert elapsed >= 3.0


def test_once_does_not_overrun_a_weak_resolver(tmp_path: Path) -> None:
    """40 names against a forwarder that queues 10 queries and drops the rest: every one
    must get the server's NXDOMAIN, none a dns_timeout of our own making."""
    with WeakResolver(queue=10, delay=0.05) as resolver:
        checks = "\n".join(
            f"      - {{name: n{i}, kind: dns, target: n{i}.test, resolvers: [weak], "
            "control: none}"
            for i in range(40)
        )
        config = tmp_path / "config.yaml"
        config.write_text(
            "defaults: {interval: 10s, timeout: 3s}\n"
            f"resolvers: {{weak: '{resolver.url}'}}\n"
            f"services:\n  s:\n    checks:\n{checks}\n"
        )
        done = run("--once", f"--config.file={config}")
    _, rows, _ = table(done.stdout)
    verdicts = [row[3] for row in rows[1:]]
    assert verdicts == ["dns_nxdomain"] * 40, re.findall(r"dns_\w+", done.stdout)
    assert resolver.dropped == 0
