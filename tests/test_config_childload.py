"""A serving exporter loads its configuration in a forked child (README: "The exporter under
load"): the answer is exactly what loading in the process gives, and the parse's memory never
enters the long-running process."""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from exporter.config import load_file
from exporter.config.childload import load_file_in_child
from exporter.errors import ConfigError
from peers import REPO
from peers.exporterproc import ExporterProcess
from peers.listeners import free_port

CONFIGS = pathlib.Path(__file__).parent / "configs"
VALID = sorted((CONFIGS / "valid").glob("*.yaml"))
INVALID = sorted((CONFIGS / "invalid").glob("*.yaml"))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_a_configuration_loaded_in_a_child_equals_the_one_loaded_here(
    path: pathlib.Path,
) -> None:
    assert load_file_in_child(str(path)) == load_file(str(path))


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_a_bad_configuration_loaded_in_a_child_gives_every_problem_as_here(
    path: pathlib.Path,
) -> None:
    with pytest.raises(ConfigError) as here:
        load_file(str(path))
    with pytest.raises(ConfigError) as in_child:
        load_file_in_child(str(path))
    assert in_child.value.file == here.value.file
    assert in_child.value.lines() == here.value.lines()


def test_a_child_that_dies_without_an_answer_leaves_the_load_to_the_process(
    tmp_path: pathlib.Path,
) -> None:
    # A child killed before it answers (here by a signal it gets as it starts, as the OOM
    # killer would): the process loads the file itself.
    config = CONFIGS / "valid" / VALID[0].name
    script = tmp_path / "dying.py"
    script.write_text(
        "import os, signal, sys\n"
        "from exporter.config import childload, loader\n"
        "parent = os.getpid()\n"
        "real = loader.load_file\n"
        "def load(path):\n"
        "    if os.getpid() != parent:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(path)\n"
        "childload.load_file = load\n"
        f"config = childload.load_file_in_child({str(config)!r})\n"
        f"assert config == real({str(config)!r})\n"
        "print('loaded')\n"
    )
    run = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "loaded"
    assert "ended without an answer (killed by signal 9)" in run.stderr


def test_a_connection_the_process_closes_while_a_child_loads_is_closed_at_once(
    tmp_path: pathlib.Path,
) -> None:
    # The child is forked with the process's sockets; it must not keep them open.
    path = _config(tmp_path, "large", 20000)
    ours, peer = socket.socketpair()
    peer.settimeout(30)
    loading = concurrent.futures.ThreadPoolExecutor(1).submit(load_file_in_child, str(path))
    time.sleep(0.3)  # the child is forked and parsing (20,000 checks take seconds)
    assert not loading.done()
    ours.close()
    closed = time.monotonic()
    assert peer.recv(1) == b""  # the end of the stream
    ended = time.monotonic()
    assert len(list(loading.result().checks())) == 20000
    loaded = time.monotonic()
    peer.close()
    # Held by the child, the stream ended only when the child did, just before the load.
    assert ended - closed < 0.25, f"the end came {ended - closed:.2f} s after the close"
    assert loaded - ended > 0.5, f"the load ended {loaded - ended:.2f} s after the stream"


def _config(tmp_path: pathlib.Path, name: str, checks: int) -> pathlib.Path:
    # Checks of an hour's interval against a closed local port: almost none runs while the
    # test looks, so what the process holds is the configuration and not results.
    port = free_port()
    lines = "\n".join(
        f'      - {{name: c{i}, kind: tcp, target: "127.0.0.1:{port}"}}' for i in range(checks)
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        "defaults: {interval: 1h, timeout: 1s}\nbogons: []\n"
        f"services:\n  many:\n    checks:\n{lines}\n"
    )
    return path


def _peak_rss_mib(tmp_path: pathlib.Path, name: str, checks: int) -> float:
    exporter = ExporterProcess(_config(tmp_path, name, checks), log_level="warn")
    exporter.start(ready_timeout=120)
    try:
        assert exporter.proc is not None
        status = pathlib.Path(f"/proc/{exporter.proc.pid}/status").read_text()
    finally:
        exporter.stop()
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")


def test_loading_eight_thousand_checks_does_not_raise_the_exporters_peak_memory_by_the_parse(
    tmp_path: pathlib.Path,
) -> None:
    # Loaded in the process, 8,000 checks peaked about 27 MiB above ten checks (3.4 KB per
    # check, most of it freed after the load but never given back: holes kept for the
    # exporter's life); loaded in a child, about 11 MiB, what the configuration itself holds.
    started = time.monotonic()
    small = _peak_rss_mib(tmp_path, "small", 10)
    large = _peak_rss_mib(tmp_path, "large", 8000)
    assert large - small < 18, (
        f"peak RSS {large:.1f} MiB with 8,000 checks against {small:.1f} MiB with 10 "
        f"({time.monotonic() - started:.0f} s)"
    )
