"""Attack: does the exporter's own web load change its verdicts? The installed exporter
(a private venv per checkout) runs 40 healthy checks at 2 s against local peers, under the
open-files limit of the shipped unit (LimitNOFILE), while for `--duration` seconds it gets:
half-open connections up to that (soft) limit (each sends part of a request head, then waits, and
reconnects when closed), 100 clients scraping /metrics, 50 clients on /probe, and one check
whose peer answers with a chunked body of 1-byte chunks.

    python benchmarks/bench_attack.py [--checkout PATH ...] [--rounds 1] [--duration 30]

Printed per checkout and round: the worst per-check ok ratio and how many checks were not
always ok, runs against scheduled runs (goal >= 95% for every check), the latency of a fresh
scrape on a new connection every second (goal < 1 s), and the exporter's CPU (user + sys
from /proc) and peak RSS (VmHWM). With several checkouts, rounds alternate between them.
The peers and the attackers run in child processes of their own.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import multiprocessing
import multiprocessing.connection
import os
import random
import re
import resource
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.process import cpu_seconds, install, launched, peak_rss_mib
from peers import certs, webservers
from peers.child import in_child
from peers.dnsserver import DnsServer, records
from peers.listeners import accepting_port, free_port
from peers.webclients import HalfOpenFlood

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "deploy" / "systemd" / "reachability-exporter.service"
HEALTHY = 40
INTERVAL = 2.0
SCRAPERS = 100
PROBERS = 50


def _one_byte_chunks(sock: socket.socket) -> None:
    """200 with a chunked body of 1-byte chunks, as fast as the client reads them."""
    sock.settimeout(30)
    with contextlib.suppress(OSError):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return
            data += chunk
        sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        burst = b"1\r\nz\r\n" * 10000
        while True:
            sock.sendall(burst)


def _serve(pipe: multiprocessing.connection.Connection, cert_and_key: tuple[str, str]) -> None:
    context = certs.server_context(cert_and_key)
    with ExitStack() as stack:
        dns = stack.enter_context(DnsServer({"bench.test": records("127.0.0.1")}))
        pipe.send(
            {
                "dns": dns.udp_url,
                "tcp": stack.enter_context(accepting_port()),
                "https": stack.enter_context(webservers.serve(webservers.http_handler(context))),
                "tls": stack.enter_context(webservers.serve(webservers.tls_handler(context))),
                "chunks": stack.enter_context(webservers.serve(_one_byte_chunks)),
            }
        )
        pipe.recv()


def _config(ports: dict[str, object], chunk_peer: bool) -> str:
    kinds = [
        "{{name: c{i}, kind: dns, target: bench.test, resolvers: [local]}}",
        '{{name: c{i}, kind: tcp, target: "127.0.0.1:{tcp}"}}',
        '{{name: c{i}, kind: tls, target: "web.test:{tls}", address: [127.0.0.1]}}',
        '{{name: c{i}, kind: http, target: "https://web.test:{https}/ok", address: [127.0.0.1]}}',
    ]
    lines = ["      - " + kinds[i % 4].format(i=i, **ports) for i in range(HEALTHY)]
    return (
        f"defaults: {{interval: {INTERVAL}s, timeout: 1s, ca_file: {certs.ca_pem_path()}}}\n"
        f'resolvers: {{local: "{ports["dns"]}"}}\n'
        "bogons: []\nservices:\n  bench:\n    checks:\n" + "\n".join(lines) + "\n"
    ) + (
        "  chunks:\n    checks:\n"
        f'      - {{name: drip, kind: http, target: "http://127.0.0.1:{ports["chunks"]}/"}}\n'
        if chunk_peer
        else ""
    )


def unit_open_files_limit() -> tuple[int, int]:
    """The shipped unit's LimitNOFILE as (soft, hard); systemd's default is 1024:524288."""
    match = re.search(r"^LimitNOFILE=(\d+)(?::(\d+))?", UNIT.read_text(), re.MULTILINE)
    if match is None:
        return 1024, 524288
    return int(match.group(1)), int(match.group(2) or match.group(1))


def _venv(checkout: Path) -> Path:
    """A private venv per checkout, named after its path so that two copies never share one."""
    digest = hashlib.sha256(str(checkout.resolve()).encode()).hexdigest()[:10]
    return Path("/tmp/bench-attack") / f"{checkout.name}-{digest}"


def _attack(pipe: multiprocessing.connection.Connection, port: int, half_open: int) -> None:
    """The attackers, in a child: half-open connections, scrapers and /probe clients."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, half_open + 1024), hard))
    stop = threading.Event()
    counts = {"scrapes": 0, "scrape_errors": 0, "probes": 0, "probe_503": 0, "probe_errors": 0}
    lock = threading.Lock()

    def client(path: str, ok: str, busy: str, failed: str) -> None:
        while not stop.is_set():
            target = path.format(i=random.randrange(HEALTHY))
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{target}", timeout=10) as r:
                    r.read()
                key = ok
            except urllib.error.HTTPError as exc:
                key = busy if exc.code == 503 else failed
            except OSError:
                key = failed
                time.sleep(0.1)
            with lock:
                counts[key] += 1

    threads = [
        threading.Thread(target=client, args=("/metrics", "scrapes", "scrape_errors",
                                               "scrape_errors"), daemon=True)
        for _ in range(SCRAPERS)
    ] + [
        threading.Thread(target=client, args=("/probe?service=bench&check=c{i}", "probes",
                                               "probe_503", "probe_errors"), daemon=True)
        for _ in range(PROBERS)
    ]  # fmt: skip
    with HalfOpenFlood(port, half_open, burst=50) as flood:
        for thread in threads:
            thread.start()
        pipe.send("started")
        pipe.recv()
        stop.set()
        counts["half_open_opened"] = flood.opened
        counts["half_open_closed_by_server"] = flood.closed_by_server
    pipe.send(counts)


CONNECT_TIMES: list[float] = []


def _scrape(port: int, timeout: float) -> tuple[float, dict[tuple[str, str, str], float] | None]:
    """A fresh scrape on a new connection: (seconds, samples or None when it failed). The
    TCP handshake's time goes to CONNECT_TIMES (a dropped SYN shows as >= 1 s there)."""
    started = time.monotonic()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        connection.connect()
        CONNECT_TIMES.append(time.monotonic() - started)
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        text = response.read().decode()
        connection.close()
    except OSError:
        return time.monotonic() - started, None
    took = time.monotonic() - started
    samples: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("service") == "bench" and "check" in labels:
                key = (sample.name, labels["check"], labels.get("verdict", ""))
                samples[key] = samples.get(key, 0.0) + sample.value
    return took, samples


def _soft_open_files(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise RuntimeError("no open files limit")


def _counts(samples: dict[tuple[str, str, str], float], name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (metric, check, _), value in samples.items():
        if metric == name:
            out[check] = out.get(check, 0.0) + value
    return out


def run_round(
    exe: Path, ports: dict[str, object], duration: float, workdir: Path, chunk_peer: bool
) -> dict[str, object]:
    soft, hard = unit_open_files_limit()
    hard = min(hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1])  # what this machine allows
    config = workdir / "config.yaml"
    config.write_text(_config(ports, chunk_peer))
    port = free_port()
    argv = ["prlimit", f"--nofile={soft}:{hard}", str(exe), f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip

    def answers() -> bool:
        return _scrape(port, 2)[1] is not None

    with launched(argv, port, workdir, "exporter", ready=answers, timeout=20) as pid:
        time.sleep(2 * INTERVAL)  # every check has run
        _, before = _scrape(port, 10)
        assert before is not None
        cpu_before, started = cpu_seconds(pid), time.monotonic()
        parent, child = multiprocessing.Pipe()
        attacker = multiprocessing.get_context("spawn").Process(
            target=_attack, args=(child, port, _soft_open_files(pid))
        )
        attacker.start()
        parent.recv()
        limit = _soft_open_files(pid)  # after the exporter raised it
        latencies = []
        CONNECT_TIMES.clear()
        while time.monotonic() - started < duration:
            took, samples = _scrape(port, 15)
            latencies.append(took if samples is not None else float("inf"))
            time.sleep(max(0.0, 1.0 - took))
        took, after = _scrape(port, 15)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(pid) - cpu_before
        parent.send("stop")
        attack = parent.recv()
        attacker.join(10)
        if after is None:  # the exporter did not answer under attack: read it once it is over
            time.sleep(2)
            _, after = _scrape(port, 30)
        hwm = peak_rss_mib(pid)
    assert after is not None, "no scrape answered even after the attack"
    runs0, runs1 = (
        _counts(before, "reachability_check_runs_total"),
        _counts(after, "reachability_check_runs_total"),
    )
    fails0, fails1 = (
        _counts(before, "reachability_check_failures_total"),
        _counts(after, "reachability_check_failures_total"),
    )
    scheduled = elapsed / INTERVAL
    ratios, ok_ratios = {}, {}
    for check in runs1:
        ran = runs1[check] - runs0.get(check, 0.0)
        failed = fails1.get(check, 0.0) - fails0.get(check, 0.0)
        ratios[check] = ran / scheduled
        ok_ratios[check] = (ran - failed) / ran if ran else 0.0
    failed_by_verdict: dict[str, float] = {}
    for (metric, _, verdict), value in after.items():
        if metric == "reachability_check_failures_total":
            failed_by_verdict[verdict] = failed_by_verdict.get(verdict, 0.0) + value
    for (metric, _, verdict), value in before.items():
        if metric == "reachability_check_failures_total":
            failed_by_verdict[verdict] -= value
    bad_verdicts = {
        check: verdict
        for (metric, check, verdict), value in after.items()
        if metric == "reachability_check_verdict" and value == 1.0 and verdict != "ok"
    }
    latencies.sort()
    return {
        "limit": limit,
        "elapsed": elapsed,
        "min_ok_ratio": min(ok_ratios.values()),
        "checks_not_always_ok": sum(1 for r in ok_ratios.values() if r < 1.0),
        "failed_runs": {v: int(n) for v, n in failed_by_verdict.items() if n},
        "min_runs_ratio": min(ratios.values()),
        "checks_below_95": sum(1 for r in ratios.values() if r < 0.95),
        "verdicts_not_ok_at_end": bad_verdicts,
        "scrape_p50": latencies[len(latencies) // 2],
        "scrape_max": latencies[-1],
        "connect_max": max(CONNECT_TIMES, default=float("inf")),
        "scrapes_failed": sum(1 for x in latencies if x == float("inf")),
        "cpu": cpu / elapsed,
        "vm_hwm_mib": hwm,
        "attack": attack,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", action="append", type=Path, help="default: this one")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument(
        "--no-chunk-peer",
        dest="chunk_peer",
        action="store_false",
        help="leave out the 1-byte-chunk check, to see the web side's effect alone",
    )
    args = parser.parse_args()
    checkouts = args.checkout or [REPO]
    exes = {checkout: install(checkout, _venv(checkout)) for checkout in checkouts}
    with in_child(_serve, certs.issue("web.test", "127.0.0.1")) as ports:
        for round_number in range(1, args.rounds + 1):
            for checkout, exe in exes.items():
                workdir = Path("/tmp/bench-attack") / f"run-{checkout.name}-{round_number}"
                workdir.mkdir(parents=True, exist_ok=True)
                r = run_round(exe, ports, args.duration, workdir, args.chunk_peer)
                print(
                    f"{checkout} round {round_number}: {r['elapsed']:.0f}s under attack, "
                    f"LimitNOFILE {r['limit']}"
                )
                print(
                    f"  per-check ok ratio:  min {r['min_ok_ratio']:.2f}, "
                    f"{r['checks_not_always_ok']} of {HEALTHY} checks not always ok; "
                    f"failed runs: {r['failed_runs'] or 'none'}; "
                    f"not ok at the end: {r['verdicts_not_ok_at_end'] or 'none'}"
                )
                print(
                    f"  runs vs scheduled:   min {r['min_runs_ratio']:.0%}, "
                    f"{r['checks_below_95']} of {HEALTHY} below 95% (goal: none)"
                )
                print(
                    f"  fresh scrape:        p50 {r['scrape_p50']:.3f}s, "
                    f"max {r['scrape_max']:.3f}s, {r['scrapes_failed']} failed, TCP handshake "
                    f"max {r['connect_max']:.3f}s "
                    "(goal: < 1 s)"
                )
                print(
                    f"  exporter:            CPU {r['cpu']:.0%} of a core, peak RSS "
                    f"{r['vm_hwm_mib']:.0f} MiB"
                )
                print(f"  attackers:           {r['attack']}")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
