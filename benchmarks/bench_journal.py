"""The evidence journal's cost: the installed exporter with the journal on disk against the
same exporter keeping nothing (--storage.path=""), on checks whose verdict flips on nearly
every run, so that the journal writes all the time. Alternating rounds; CPU (user + system,
/proc/PID/stat), peak RSS (VmHWM), scheduler lag (from /metrics) and the journal's size.

    python benchmarks/bench_journal.py [--checks 200] [--seconds 20] [--rounds 3]

The exporter is installed from this checkout into a private venv under /tmp (never the
global environment); the flapping ports are served by a child process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = Path("/tmp/reachability-bench-journal-venv")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def install() -> Path:
    """A venv with the exporter from this checkout; returns its entry point."""
    exe = VENV / "bin" / "reachability-exporter"
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [str(VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(REPO)],
        check=True,
    )
    origin = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", "import exporter; print(exporter.__file__)"],
        check=True, capture_output=True, text=True, cwd="/",
    ).stdout  # fmt: skip
    assert origin.startswith(str(VENV)), f"the venv imports the wrong exporter: {origin}"
    return exe


@contextlib.contextmanager
def flapping_ports(count: int, period: float) -> Iterator[list[int]]:
    """`count` ports, each listening for `period`, then closed for `period`: a tcp check on
    one changes its verdict on most runs. Served by a child process (this script's own
    `--serve` mode), so the figures are the exporter's alone."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(count), str(period)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    ports = [int(p) for p in child.stdout.readline().split()]
    try:
        yield ports
    finally:
        child.terminate()
        child.wait(10)


def serve(count: int, period: float) -> None:
    ports = []
    for _ in range(count):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    print(" ".join(map(str, ports)), flush=True)
    while True:
        opened = []
        for port in ports:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with contextlib.suppress(OSError):
                sock.bind(("127.0.0.1", port))
                sock.listen(64)
            opened.append(sock)
        time.sleep(period)
        for sock in opened:
            sock.close()
        time.sleep(period)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def one_round(exe: Path, config: Path, storage: str, seconds: float) -> dict[str, float]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [str(exe), f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
         f"--storage.path={storage}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=config.parent,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                scrape(port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        start = cpu_seconds(process.pid)
        time.sleep(seconds)
        cpu = cpu_seconds(process.pid) - start
        text = scrape(port)
        lag_count = metric(text, "reachability_exporter_scheduler_lag_seconds_count")
        lag_sum = metric(text, "reachability_exporter_scheduler_lag_seconds_sum")
        return {
            "cpu": cpu,
            "rss": peak_rss_mib(process.pid),
            "lag_ms": 1000 * lag_sum / max(lag_count, 1),
        }
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), float(args.serve[1]))
        return
    exe = install()
    work = Path(tempfile.mkdtemp(prefix="bench-journal-"))
    interval = 1.0
    with flapping_ports(args.checks, period=interval * 0.73) as ports:
        config = work / "config.yaml"
        lines = [f"defaults: {{interval: {interval}s, timeout: 300ms}}", "services:",
                 "  flap:", "    checks:"]  # fmt: skip
        lines += [f'      - {{name: c{i}, kind: tcp, target: "127.0.0.1:{port}"}}'
                  for i, port in enumerate(ports)]  # fmt: skip
        config.write_text("\n".join(lines) + "\n")
        results: dict[str, list[dict[str, float]]] = {"journal": [], "none": []}
        journal_bytes = 0
        for number in range(args.rounds):
            # Alternate which goes first, so a drift in the machine's load falls on both.
            order = ["journal", "none"] if number % 2 == 0 else ["none", "journal"]
            for variant in order:
                storage = str(work / f"data{number}") if variant == "journal" else ""
                results[variant].append(one_round(exe, config, storage, args.seconds))
                if variant == "journal":
                    journal_bytes = sum(p.stat().st_size for p in Path(storage).iterdir())
                print(f"round {number + 1} {variant:8s} {results[variant][-1]}", flush=True)
    records = sum(1 for p in (work / f"data{args.rounds - 1}").iterdir()
                  for _ in p.open("rb"))  # fmt: skip
    print(f"\n{args.checks} flapping checks, interval {interval}s, {args.seconds}s a round")
    print(f"last journal round: {records} records, {journal_bytes / 1024:.0f} KiB")
    for key, unit in (("cpu", "s CPU"), ("rss", "MiB peak RSS"), ("lag_ms", "ms mean lag")):
        journal = [r[key] for r in results["journal"]]
        none = [r[key] for r in results["none"]]
        ratios = [j / n if n else float("nan") for j, n in zip(journal, none, strict=True)]
        print(f"{unit:14s} journal {sum(journal) / len(journal):8.2f}  "
              f"none {sum(none) / len(none):8.2f}  "
              f"ratio per round {', '.join(f'{r:.2f}' for r in ratios)}")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
