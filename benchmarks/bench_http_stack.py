"""CPU per http probe of the INSTALLED exporter, direct and through a SOCKS5 and a CONNECT
proxy, for two checkouts side by side (e.g. before and after a change of the HTTP stack).

Each checkout is installed into a private venv under /tmp (sharing this interpreter's
site-packages for the dependencies), then run as `reachability-exporter` with `--checks`
http checks against a plain-HTTP peer on loopback; the peers run in a child process so the
figures are the exporter's alone. CPU is user+sys from /proc/PID/stat over the measured
window, peak RSS from VmHWM, runs from reachability_check_runs_total. Rounds alternate
between the checkouts so that a busy machine skews both alike; compare ratios.

    python3 -m benchmarks.bench_http_stack --checkout before=/tmp/base --checkout after=.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing.connection
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

from benchmarks.process import cpu_seconds, install, launched, peak_rss_mib
from peers.child import in_child
from peers.listeners import free_port


def _serve(pipe: multiprocessing.connection.Connection, cert_and_key: tuple[str, str]) -> None:
    from peers import webservers
    from peers.proxies import Proxy

    with contextlib.ExitStack() as stack:
        ports = {
            "http": stack.enter_context(webservers.serve(webservers.http_handler())),
            "socks5": stack.enter_context(webservers.serve(Proxy().socks5)),
            "connect": stack.enter_context(webservers.serve(Proxy().http)),
        }
        pipe.send(ports)
        pipe.recv()


def write_config(path: Path, ports: dict[str, int], mode: str, checks: int, interval: str) -> None:
    proxy = {"direct": None, "socks5": "socks5", "connect": "http"}[mode]
    items = []
    for i in range(checks):
        item: dict[str, object] = {
            "name": f"h{i}",
            "kind": "http",
            "target": f"http://127.0.0.1:{ports['http']}/ok?{i}",
        }
        if proxy:
            item["proxy"] = f"{proxy}://127.0.0.1:{ports[mode]}"
        items.append(item)
    document = {
        "defaults": {"interval": interval, "timeout": "900ms"},
        "bogons": [],
        "services": {"bench": {"checks": items}},
    }
    path.write_text(yaml.safe_dump(document))


def runs_and_failures(port: int) -> tuple[float, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    runs = failures = 0.0
    for line in text.splitlines():
        if line.startswith("reachability_check_runs_total{"):
            runs += float(line.rsplit(" ", 1)[1])
        elif line.startswith("reachability_check_failures_total{"):
            failures += float(line.rsplit(" ", 1)[1])
    return runs, failures


def _ready(port: int) -> Callable[[], bool]:
    """Ready once /-/ready answers: the configuration is loaded and the schedule runs."""

    def ready() -> bool:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1)
            return True
        return False

    return ready


@contextlib.contextmanager
def running(script: Path, config: Path) -> Iterator[tuple[int, int]]:
    port = free_port()
    argv = [str(script), f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn"]  # fmt: skip
    with launched(argv, port, config.parent, "exporter", ready=_ready(port), timeout=20) as pid:
        yield pid, port


def measure(
    script: Path, config: Path, warmup: float, seconds: float
) -> tuple[float, float, float]:
    """(ms of CPU per run, runs, peak RSS MiB) over the window after the warm-up."""
    with running(script, config) as (pid, port):
        time.sleep(warmup)
        cpu0, (runs0, fail0) = cpu_seconds(pid), runs_and_failures(port)
        time.sleep(seconds)
        cpu1, (runs1, fail1) = cpu_seconds(pid), runs_and_failures(port)
        rss = peak_rss_mib(pid)
    runs = runs1 - runs0
    if fail1 - fail0:
        print(f"  warning: {fail1 - fail0:.0f} failed runs", file=sys.stderr)
    return 1000 * (cpu1 - cpu0) / max(runs, 1), runs, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", action="append", required=True, help="NAME=PATH")
    parser.add_argument("--modes", default="direct,socks5,connect")
    parser.add_argument("--checks", type=int, default=100)
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    scripts = {}
    for item in args.checkout:
        name, _, path = item.partition("=")
        scripts[name] = install(Path(path).resolve(), Path(f"/tmp/rx-bench-http-{name}"))
    results: dict[tuple[str, str], list[float]] = {}
    with in_child(_serve, ("", "")) as ports, tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            config = Path(tmp) / f"{mode}.yml"
            write_config(config, ports, mode, args.checks, args.interval)
            for round_ in range(args.rounds):
                # Alternate the order each round: neither checkout always runs first.
                order = list(scripts) if round_ % 2 == 0 else list(reversed(scripts))
                for name in order:
                    ms, runs, rss = measure(scripts[name], config, args.warmup, args.seconds)
                    results.setdefault((mode, name), []).append(ms)
                    print(f"{mode:8} {name:8} round {round_}: {ms:.3f} ms CPU/run, "
                          f"{runs:.0f} runs, peak RSS {rss:.0f} MiB", flush=True)  # fmt: skip
    print("\nmedian ms CPU per probe run (user+sys of the exporter process):")
    for (mode, name), values in results.items():
        print(f"{mode:8} {name:8} {statistics.median(values):.3f}  ({len(values)} rounds)")


if __name__ == "__main__":
    main()
