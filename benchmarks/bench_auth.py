"""Basic auth under attack, the installed exporter side by side with Prometheus (whose
--web.config.file is the exporter-toolkit's): does timing tell unknown users from known ones,
and what does a flood of wrong passwords cost?

    python benchmarks/bench_auth.py [--checkout DIR ...] [--rounds 2] [--clients 50]

Each checkout is installed into a private venv under /tmp and run as `reachability-exporter`
with a web configuration holding one user (bcrypt cost 10). Per round and target, in
alternating order: the median time of 15 requests by an unknown user and by the known user
with a wrong password; then `--clients` threads send requests with fresh wrong passwords for
`--seconds`, while one client with the right password asks /-/healthy every 100 ms. Reported:
the target's CPU (user+sys from /proc/PID/stat) per wall second, the right client's worst
latency, and peak RSS (VmHWM). The machine is shared: read ratios, not absolute figures.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from benchmarks.process import cpu_seconds, install, launched, peak_rss_mib  # noqa: E402
from peers.listeners import free_port  # noqa: E402

USER, PASSWORD = "prometheus", "the-right-password"


def request(port: int, user: str, password: str) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/-/healthy")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@contextlib.contextmanager
def target(name: str, command: list[str], port: int, workdir: Path) -> Iterator[int]:
    """The target running, once the known user gets in (the web configuration is loaded)."""

    def ready() -> bool:
        with contextlib.suppress(OSError):
            return request(port, USER, PASSWORD) == 200
        return False

    with launched(command, port, workdir, name, ready=ready) as pid:
        yield pid


def median_time(port: int, user: str, count: int = 15) -> float:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        request(port, user, secrets.token_hex(8))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def flood(port: int, pid: int, clients: int, seconds: float) -> dict[str, float]:
    stop = threading.Event()
    answered = [0]
    worst = [0.0]

    def attacker() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                request(port, USER, secrets.token_hex(8))
                answered[0] += 1

    def legit() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            status = request(port, USER, PASSWORD)
            took = time.perf_counter() - started
            worst[0] = max(worst[0], took if status == 200 else 99.0)
            time.sleep(0.1)

    threads = [threading.Thread(target=attacker, daemon=True) for _ in range(clients)]
    threads.append(threading.Thread(target=legit, daemon=True))
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    cpu_after, wall_after = cpu_seconds(pid), time.monotonic()
    stop.set()
    for thread in threads:
        thread.join(35)
    return {
        "cores": (cpu_after - cpu_before) / (wall_after - wall_before),
        "wrong_per_s": answered[0] / (wall_after - wall_before),
        "legit_worst_s": worst[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", type=Path, help="default: this one")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    (workdir / "web.yml").write_text(f"basic_auth_users:\n  {USER}: '{hashed}'\n")
    (workdir / "config.yaml").write_text(
        "services:\n  s:\n    checks:\n      - {name: t, kind: tcp, target: '127.0.0.1:9'}\n"
    )
    (workdir / "prometheus.yml").write_text("global: {scrape_interval: 1h}\n")
    targets: dict[str, list[str]] = {}
    for checkout in args.checkout or [HERE]:
        venv = Path(tempfile.mkdtemp(prefix="bench-auth-venv-"))
        binary = install(checkout.resolve(), venv)
        targets[f"exporter:{checkout.name}"] = [
            str(binary), f"--config.file={workdir / 'config.yaml'}",
            f"--web.config.file={workdir / 'web.yml'}", "--log.level=warn",
        ]  # fmt: skip
    if shutil.which("prometheus"):
        targets["prometheus"] = [
            "prometheus", f"--config.file={workdir / 'prometheus.yml'}",
            f"--web.config.file={workdir / 'web.yml'}", "--log.level=warn",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
        ]  # fmt: skip
    print(f"{'round':>5} {'target':<28} {'unknown ms':>10} {'known ms':>9} {'ratio':>6} "
          f"{'cores':>6} {'wrong/s':>8} {'legit max s':>11} {'VmHWM MiB':>9}")  # fmt: skip
    for round_number in range(args.rounds):
        order = list(targets.items())
        if round_number % 2:
            order.reverse()
        for name, command in order:
            port = free_port()
            listen = f"--web.listen-address=127.0.0.1:{port}"  # both spell it the same
            with target(name, [*command, listen], port, workdir) as pid:
                unknown = median_time(port, "nobody")
                known = median_time(port, USER)
                load = flood(port, pid, args.clients, args.seconds)
                rss = peak_rss_mib(pid)
            print(f"{round_number:>5} {name:<28} {unknown * 1000:>10.1f} {known * 1000:>9.1f} "
                  f"{unknown / known:>6.2f} {load['cores']:>6.2f} {load['wrong_per_s']:>8.1f} "
                  f"{load['legit_worst_s']:>11.2f} {rss:>9.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
