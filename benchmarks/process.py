"""What every benchmark does to the process it measures: install a checkout as a user would
(into a private venv with pip), launch it and wait until it serves, and read what it paid
from /proc: user+system CPU from /proc/PID/stat and peak RSS from VmHWM.

The figures come from the kernel's accounting of the installed process, never from timing
pieces in-process, so that a benchmark measures what a user would run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- installing --------------------------------------------------------------------------------


def install(checkout: Path, venv: Path, *, system_site_packages: bool = True) -> Path:
    """`reachability-exporter` from `checkout`, installed into `venv` with pip; returns the
    console script.

    With `system_site_packages` the venv borrows this interpreter's dependencies (no network
    needed, only the build backend); without it they are installed once, when the venv is
    made. The project itself is reinstalled on every call, so that an edited checkout is what
    runs, and the venv is checked to import its own copy: an editable install elsewhere on the
    machine must not be what gets measured.
    """
    python, pip = venv / "bin" / "python", venv / "bin" / "pip"
    quiet_pip = [str(pip), "install", "-q", "--disable-pip-version-check"]
    if not pip.exists():
        made = [sys.executable, "-m", "venv", str(venv)]
        _quiet([*made, "--system-site-packages"] if system_site_packages else made)
        if not system_site_packages:
            _quiet([*quiet_pip, str(checkout)])
    _quiet([*quiet_pip, "--no-deps", "--force-reinstall", str(checkout)])
    where = _quiet([str(python), "-c", "import exporter; print(exporter.__file__)"], cwd="/")
    if not where.strip().startswith(str(venv)):
        sys.exit(f"the venv {venv} imports {where.strip()}, not its own copy")
    return venv / "bin" / "reachability-exporter"


def _quiet(argv: list[str], cwd: str | None = None) -> str:
    """Run a command, showing its output only when it fails; returns its stdout."""
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


# --- /proc readings ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of every thread of `pid` so far."""
    # The command name in field 2 may hold spaces and parentheses: split after the last ')'.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM) so far, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- launching ---------------------------------------------------------------------------------


def accepts_connections(port: int) -> Callable[[], bool]:
    """The default readiness test: something accepts TCP connections on `port`."""

    def ready() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        return False

    return ready


@contextlib.contextmanager
def launched(
    argv: list[str],
    port: int,
    workdir: Path,
    name: str,
    *,
    ready: Callable[[], bool] | None = None,
    timeout: float = 30.0,
) -> Iterator[int]:
    """`argv` running in `workdir` with its output in `workdir/<name>.log`, once `ready()`
    (by default: it accepts connections on `port`); yields its pid and stops it on the way
    out. A process that exits or is not ready within `timeout` seconds raises, with the tail
    of its log, since a benchmark of a process that did not start measures nothing."""
    is_ready = ready or accepts_connections(port)
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not is_ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready on {port}:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
