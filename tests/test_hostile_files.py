"""Configuration paths that are not the file they should be — a FIFO, a directory, a link to
/dev/zero, a file far too large — at start (exit 2, one line) and on reload (refused, the
reload metric reads 0, and later reloads still work)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from exporter import safefile
from exporter.config import load_file
from exporter.errors import ConfigError
from peers.exporterproc import REPO, ExporterProcess

RELOAD_METRIC = "reachability_exporter_config_last_reload_successful"
GOOD = """
services:
  s:
    checks:
      - {{name: tcp, kind: tcp, target: "127.0.0.1:{port}"}}
"""


def _limit_memory() -> None:
    # Should a file be read without bound, this child fails instead of the machine.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def config_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "--config.check", f"--config.file={path}"],
        cwd=REPO, capture_output=True, text=True, timeout=30, preexec_fn=_limit_memory,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: os.mkfifo(p), "a FIFO (named pipe), not a regular file"),
        (lambda p: p.symlink_to("/dev/zero"), "a character device, not a regular file"),
        (lambda p: p.mkdir(), "Is a directory"),
    ],
    ids=["fifo", "dev-zero", "directory"],
)
def test_a_config_path_that_is_not_a_regular_file_is_refused_at_once(
    tmp_path: Path, make: object, reason: str
) -> None:
    path = tmp_path / "config.yaml"
    make(path)  # type: ignore[operator]
    done = config_check(path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"{path}: cannot read configuration: {reason}"


def test_a_config_file_larger_than_the_bound_is_refused_without_reading_it_all(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.yaml"
    with path.open("wb") as handle:
        handle.truncate(safefile.MAX_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(ConfigError) as caught:
        load_file(str(path))
    assert caught.value.lines() == [f"{path}: cannot read configuration: larger than 16 MiB"]


def test_a_reload_from_a_fifo_fails_on_the_metric_and_later_reloads_still_work(
    tmp_path: Path, listener: int
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD.format(port=listener))
    process = ExporterProcess(path).start()
    try:
        assert process.value(RELOAD_METRIC) == 1.0
        path.unlink()
        os.mkfifo(path)
        status, body = process.get("/-/reload", method="POST", timeout=10)
        assert status == 500, body
        assert "not a regular file" in body
        assert process.value(RELOAD_METRIC) == 0.0
        process.reload()  # SIGHUP queues behind nothing: no reload is stuck on the FIFO
        path.unlink()
        path.write_text(GOOD.format(port=listener))
        status, body = process.get("/-/reload", method="POST", timeout=10)
        assert status == 200, body
        assert process.value(RELOAD_METRIC) == 1.0
    finally:
        assert process.stop() == 0, process.logs()
