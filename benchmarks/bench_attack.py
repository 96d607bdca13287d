"""Attack: does the exporter's own web load change its verdicts? The installed exporter
(a private venv per checkout) runs 40 healthy checks at 2 s against local peers, under the
open-files limit of the shipped unit (LimitNOFILE), while for `--duration` seconds it gets:
half-open connections up to that (soft) limit (each sends part of a request head, then waits, and
reconnects when closed), 100 clients scraping /metrics, 50 clients on /probe, and one check
whose peer answers with a chunked body of 1-byte chunks.

    python benchmarks/bench_attack.py [--checkout PATH ...] [--rounds 1] [--duration 30] [--pin]

Printed per checkout and round, each goal with PASS or FAIL: every healthy check ok on every
run; every check ran >= 95% of the runs its schedule held in the window (counted from its
last run before the attack, so that the phase of a 2 s schedule in a 30 s window does not
count as a missed run; the plain runs / (window / interval) is printed beside it); every
fresh scrape on a new connection, one a second, answered in < 1 s. Then the exporter's
scheduler lag and event-loop stalls during the attack (from its own histograms), its CPU
(user + sys from /proc) and peak RSS (VmHWM), and what else ran: the attackers' and the
peers' CPU and the whole machine's busy share and load average, since all of them share the
machine's cores. When the machine was saturated (>= 95% busy), a FAIL may be the machine's:
the round says so. With several checkouts, rounds alternate between them.

The peers and the attackers run in child processes of their own. `--pin` puts the exporter
on the first CPU and the attackers and peers on the others (os.sched_setaffinity on every
thread), so that the attackers' CPU cannot starve the process under test; it is off by
default because on a machine shared with other work it also keeps the exporter off a
second core that may be idle.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import math
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
from typing import Any

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
TIMEOUT = 1.0
SCRAPERS = 100
PROBERS = 50


def _one_byte_chunks(sock: socket.socket) -> None:
    """200 with a chunked body of 1-byte chunks, as fast as the client reads them."""
    sock.settimeout(30)
    with contextlib.suppress(OSError):
        if webservers.read_head(sock) is None:
            return
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
                "pid": os.getpid(),
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
        f"defaults: {{interval: {INTERVAL:g}s, timeout: {TIMEOUT:g}s, "
        f"ca_file: {certs.ca_pem_path()}}}\n"
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


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` onto `cpus` (threads started later inherit their creator's)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), cpus)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


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
            elif sample.name.startswith(SELF_HISTOGRAMS):
                samples[(sample.name, "", labels.get("le", ""))] = sample.value
    return took, samples


LAG = "reachability_exporter_scheduler_lag_seconds"
STALL = "reachability_exporter_event_loop_stall_seconds"
SELF_HISTOGRAMS = (LAG, STALL)


def _histogram(
    before: dict[tuple[str, str, str], float], after: dict[tuple[str, str, str], float], name: str
) -> tuple[dict[float, float], float, float]:
    """One of the exporter's own histograms over the attack: (cumulative count by upper
    bound, count, sum)."""

    def delta(key: tuple[str, str, str]) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    buckets = {
        float(le): delta((metric, "", le))
        for (metric, _, le) in after
        if metric == f"{name}_bucket"
    }
    return buckets, delta((f"{name}_count", "", "")), delta((f"{name}_sum", "", ""))


def _quantile_bound(buckets: dict[float, float], count: float, q: float) -> float:
    """The smallest bucket bound at or below which a share `q` of the observations fell."""
    for bound in sorted(buckets):
        if buckets[bound] >= q * count:
            return bound
    return float("inf")


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
    exe: Path,
    ports: dict[str, object],
    duration: float,
    workdir: Path,
    chunk_peer: bool,
    exporter_cpus: set[int] | None,
) -> dict[str, Any]:
    soft, hard = unit_open_files_limit()
    hard = min(hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1])  # what this machine allows
    config = workdir / "config.yaml"
    config.write_text(_config(ports, chunk_peer))
    port = free_port()
    argv = ["prlimit", f"--nofile={soft}:{hard}", str(exe), f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip

    def answers() -> bool:
        return _scrape(port, 2)[1] is not None

    peers = int(str(ports["pid"]))
    with launched(argv, port, workdir, "exporter", ready=answers, timeout=20) as pid:
        if exporter_cpus is not None:
            pin(pid, exporter_cpus)
        time.sleep(2 * INTERVAL)  # every check has run
        _, before = _scrape(port, 10)
        # Wall and monotonic clocks read together: the window is measured on the monotonic
        # one (the wall clock of a VM may step), the runs' phase on the exporter's wall clock.
        before_wall, before_mono = time.time(), time.monotonic()
        assert before is not None
        parent, child = multiprocessing.Pipe()
        attacker = multiprocessing.get_context("spawn").Process(
            target=_attack, args=(child, port, _soft_open_files(pid))
        )
        attacker.start()
        assert attacker.pid is not None
        if exporter_cpus is not None:
            pin(attacker.pid, set(range(os.cpu_count() or 1)) - exporter_cpus)
        cpu_before, started = cpu_seconds(pid), time.monotonic()
        others_before = (cpu_seconds(attacker.pid), cpu_seconds(peers), machine_ticks())
        load_before = os.getloadavg()[0]
        parent.recv()
        limit = _soft_open_files(pid)  # after the exporter raised it
        latencies = []
        CONNECT_TIMES.clear()
        while time.monotonic() - started < duration:
            took, samples = _scrape(port, 15)
            latencies.append(took if samples is not None else float("inf"))
            time.sleep(max(0.0, 1.0 - took))
        last_wall, last_mono = time.time(), time.monotonic()
        took, after = _scrape(port, 15)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(pid) - cpu_before
        busy, total = machine_ticks()
        others = {
            "attackers_cpu": (cpu_seconds(attacker.pid) - others_before[0]) / elapsed,
            "peers_cpu": (cpu_seconds(peers) - others_before[1]) / elapsed,
            "machine_busy": (busy - others_before[2][0]) / max(total - others_before[2][1], 1),
            "load": (load_before, os.getloadavg()[0]),
        }
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
    last0 = _counts(before, "reachability_check_last_run_timestamp_seconds")
    last1 = _counts(after, "reachability_check_last_run_timestamp_seconds")
    durations0 = _counts(before, "reachability_check_duration_seconds")
    # When the last snapshot was rendered, at the earliest (seconds after the before
    # snapshot was read): after its request was sent, and after the last run it shows ended.
    rendered = last_mono - before_mono + max(0.0, max(last1.values()) - last_wall)
    ratios, due_ratios, ok_ratios, missed = {}, {}, {}, {}
    for check in runs1:
        ran = runs1[check] - runs0.get(check, 0.0)
        failed = fails1.get(check, 0.0) - fails0.get(check, 0.0)
        ratios[check] = ran / scheduled
        # The runs due on this check's own schedule (its slots every INTERVAL from the start
        # of its last run before the attack) early enough to have ended, timeout and all,
        # before the last snapshot: a fixed window cuts a 2 s schedule at any phase, which
        # alone reads as up to one missed run in fifteen.
        start0 = last0.get(check, 0.0) - durations0.get(check, 0.0) - before_wall  # <= 0
        due = math.floor((rendered - TIMEOUT - start0) / INTERVAL)
        due_ratios[check] = ran / due if due > 0 else 0.0
        missed[check] = max(due - ran, 0)
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
    lag, lag_count, _ = _histogram(before, after, LAG)
    stall, stall_count, stall_sum = _histogram(before, after, STALL)
    return {
        "limit": limit,
        "elapsed": elapsed,
        "min_ok_ratio": min(ok_ratios.values()),
        "checks_not_always_ok": sum(1 for r in ok_ratios.values() if r < 1.0),
        "failed_runs": {v: int(n) for v, n in failed_by_verdict.items() if n},
        "min_runs_ratio": min(ratios.values()),
        "checks_below_95": sum(1 for r in ratios.values() if r < 0.95),
        "min_due_ratio": min(due_ratios.values()),
        "checks_due_below_95": sum(1 for r in due_ratios.values() if r < 0.95),
        "missed_runs": sum(missed.values()),
        # How far the wall clock stepped against the monotonic one during the round.
        "clock_step": (last_wall - before_wall) - (last_mono - before_mono),
        "lag_p99": _quantile_bound(lag, lag_count, 0.99),
        "lag_over_1s": lag_count - lag.get(1.0, 0.0),
        "lag_count": lag_count,
        "stall_seconds": stall_sum,
        "stall_max": _quantile_bound(stall, stall_count, 1.0),
        **others,
        "verdicts_not_ok_at_end": bad_verdicts,
        "scrape_p50": latencies[len(latencies) // 2],
        "scrape_p90": latencies[int(len(latencies) * 0.9)],
        "scrapes": len(latencies),
        "scrape_max": latencies[-1],
        "connect_max": max(CONNECT_TIMES, default=float("inf")),
        "scrapes_failed": sum(1 for x in latencies if x == float("inf")),
        "cpu": cpu / elapsed,
        "vm_hwm_mib": hwm,
        "attack": attack,
    }


def _verdict(held: bool) -> str:
    return "PASS" if held else "FAIL"


def report(checkout: Path, round_number: int, r: dict[str, Any]) -> bool:
    """Print one round; True when every goal held."""
    load0, load1 = r["load"]
    saturated = r["machine_busy"] >= 0.95
    print(
        f"{checkout} round {round_number}: {r['elapsed']:.0f}s under attack, "
        f"LimitNOFILE {r['limit']}, load average {load0:.1f} -> {load1:.1f}"
    )
    always_ok = r["checks_not_always_ok"] == 0
    print(
        f"  {_verdict(always_ok)} every check ok on every run: min ok ratio "
        f"{r['min_ok_ratio']:.2f}, {r['checks_not_always_ok']} of {HEALTHY} not always ok; "
        f"failed runs: {r['failed_runs'] or 'none'}; "
        f"not ok at the end: {r['verdicts_not_ok_at_end'] or 'none'}"
    )
    on_schedule = r["checks_due_below_95"] == 0
    print(
        f"  {_verdict(on_schedule)} every check ran >= 95% of its due runs: min "
        f"{r['min_due_ratio']:.0%}, {r['checks_due_below_95']} of {HEALTHY} below, "
        f"{r['missed_runs']:.0f} runs missed in all (runs / (window / interval): min "
        f"{r['min_runs_ratio']:.0%}, {r['checks_below_95']} below 95%)"
    )
    fast = r["scrape_max"] < 1.0
    print(
        f"  {_verdict(fast)} every fresh scrape < 1 s: {r['scrapes']} scrapes, p50 "
        f"{r['scrape_p50']:.3f}s, p90 {r['scrape_p90']:.3f}s, max {r['scrape_max']:.3f}s, "
        f"{r['scrapes_failed']} failed, TCP handshake max {r['connect_max']:.3f}s"
    )
    print(
        f"  scheduler lag:       p99 <= {r['lag_p99']:g}s, {r['lag_over_1s']:.0f} of "
        f"{r['lag_count']:.0f} runs started > 1 s late; event loop stalled "
        f"{r['stall_seconds']:.2f}s in all, longest <= {r['stall_max']:g}s"
    )
    if abs(r["clock_step"]) > 0.5:
        print(f"  the wall clock stepped {r['clock_step']:+.1f}s during the round")
    print(
        f"  exporter:            CPU {r['cpu']:.0%} of a core, peak RSS {r['vm_hwm_mib']:.0f} MiB"
    )
    print(
        f"  the rest:            attackers {r['attackers_cpu']:.0%} of a core, peers "
        f"{r['peers_cpu']:.0%}; machine {r['machine_busy']:.0%} busy"
        + (" (saturated: a FAIL may be the machine's, not the exporter's)" if saturated else "")
    )
    print(f"  attackers:           {r['attack']}")
    sys.stdout.flush()
    return bool(always_ok and on_schedule and fast)


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
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the exporter on the first CPU, the attackers and peers on the others",
    )
    args = parser.parse_args()
    exporter_cpus = {min(os.sched_getaffinity(0))} if args.pin else None
    if exporter_cpus is not None and len(os.sched_getaffinity(0)) < 2:
        sys.exit("--pin needs two CPUs")
    checkouts = args.checkout or [REPO]
    exes = {checkout: install(checkout, _venv(checkout)) for checkout in checkouts}
    passed: dict[Path, int] = dict.fromkeys(checkouts, 0)
    with in_child(_serve, certs.issue("web.test", "127.0.0.1")) as ports:
        if exporter_cpus is not None:
            pin(int(ports["pid"]), os.sched_getaffinity(0) - exporter_cpus)
        for round_number in range(1, args.rounds + 1):
            for checkout, exe in exes.items():
                workdir = Path("/tmp/bench-attack") / f"run-{checkout.name}-{round_number}"
                workdir.mkdir(parents=True, exist_ok=True)
                r = run_round(exe, ports, args.duration, workdir, args.chunk_peer, exporter_cpus)
                passed[checkout] += report(checkout, round_number, r)
    for checkout in checkouts:
        print(f"{checkout}: every goal held in {passed[checkout]} of {args.rounds} rounds")


if __name__ == "__main__":
    main()
