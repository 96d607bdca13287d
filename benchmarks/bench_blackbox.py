"""Side by side with blackbox_exporter: CPU per probe and peak RSS of the installed
`reachability-exporter` process against Debian's `prometheus-blackbox-exporter`, on the same
local peers, alternating in one launch so that the machine's drift falls on both.

    python3 benchmarks/bench_blackbox.py [--checks 200] [--window 15] [--rounds 3]
                                         [--kinds dns,tcp,tls,https] [--shipped-config]

What each side pays is read from /proc: user+system CPU of the process (all its threads) over
a measuring window, and VmHWM (peak RSS). reachability_exporter runs `--checks` checks of one
kind at a 1 s interval on its own schedule, with pinned addresses; blackbox_exporter is driven
through /probe by 20 concurrent clients paced to the same rate, since it has no schedule of its
own. Probes are counted from each side's own answers (runs_total, /probe replies). Every probe
is expected to succeed: failures are printed, a benchmark that fails its probes measures
nothing.

The exporter is installed from this checkout into a private venv (`--venv`, default
/tmp/reachability-bench-venv) with pip, as a user would install it; its dependencies are
installed once and the project itself on every launch. The peers run in a child process so
their CPU is neither side's.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing.connection
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.process import cpu_seconds, install, launched, peak_rss_mib  # noqa: E402
from peers import certs, webservers  # noqa: E402
from peers.child import in_child  # noqa: E402
from peers.dnsserver import DnsServer, records  # noqa: E402
from peers.listeners import free_port  # noqa: E402

BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
KINDS = ("dns", "tcp", "tls", "https")
CLIENTS = 20
WARMUP_SECONDS = 6.0


def _serve(pipe: multiprocessing.connection.Connection, cert_and_key: tuple[str, str]) -> None:
    context = certs.server_context(cert_and_key)
    with ExitStack() as stack:
        dns = stack.enter_context(DnsServer({"bench.test": records("127.0.0.1")}))
        https = stack.enter_context(webservers.serve(webservers.http_handler(context)))
        tls = stack.enter_context(webservers.serve(webservers.tls_handler(context)))
        tcp = stack.enter_context(webservers.serve(webservers.http_handler()))
        dns_port = int(dns.udp_url.rsplit(":", 1)[1])
        pipe.send({"dns": dns_port, "https": https, "tls": tls, "tcp": tcp})
        pipe.recv()


def fetch(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


# --- the two sides ---------------------------------------------------------------------------


@dataclass
class Reading:
    cpu_ms_per_probe: float
    probes_per_second: float
    peak_rss_mib: float
    failures: int


def reachability_config(kind: str, ports: dict[str, int], checks: int) -> str:
    forms = {
        "dns": "{{name: c{i}, kind: dns, target: bench.test, resolvers: [local]}}",
        "tcp": '{{name: c{i}, kind: tcp, target: "127.0.0.1:{tcp}"}}',
        "tls": '{{name: c{i}, kind: tls, target: "web.test:{tls}", address: [127.0.0.1]}}',
        "https": '{{name: c{i}, kind: http, target: "https://web.test:{https}/ok",'
        " address: [127.0.0.1]}}",
    }
    lines = [
        "      - " + forms[kind].format(i=i, **{name: str(port) for name, port in ports.items()})
        for i in range(checks)
    ]
    return (
        f"defaults: {{interval: 1s, timeout: 900ms, ca_file: {certs.ca_pem_path()}}}\n"
        f'resolvers: {{local: "udp://127.0.0.1:{ports["dns"]}"}}\n'
        "bogons: []\nservices:\n  bench:\n    checks:\n" + "\n".join(lines) + "\n"
    )


def _runs_and_failures(exposition: str) -> tuple[int, int]:
    runs = sum(
        float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith("reachability_check_runs_total{")
    )
    failures = sum(
        1
        for line in exposition.splitlines()
        if line.startswith("reachability_check_success{") and line.endswith(" 0.0")
    )
    return int(runs), failures


def measure_reachability(
    binary: Path, config: str, window: float, workdir: Path, extra: tuple[str, ...] = ()
) -> Reading:
    path = workdir / "reachability.yml"
    path.write_text(config)
    port = free_port()
    argv = [str(binary), f"--config.file={path}", f"--web.listen-address=127.0.0.1:{port}", *extra]
    with launched(argv, port, workdir, "reachability") as pid:
        time.sleep(WARMUP_SECONDS)
        metrics = f"http://127.0.0.1:{port}/metrics"
        cpu0, runs0, started = cpu_seconds(pid), _runs_and_failures(fetch(metrics))[0], time.time()
        time.sleep(window)
        runs1, failures = _runs_and_failures(fetch(metrics))
        cpu1, elapsed = cpu_seconds(pid), time.time() - started
        probes = max(runs1 - runs0, 1)
        return Reading((cpu1 - cpu0) * 1000 / probes, probes / elapsed, peak_rss_mib(pid), failures)


BLACKBOX_MODULES = """modules:
  dns_udp:
    prober: dns
    timeout: 900ms
    dns: {{query_name: bench.test, query_type: A, transport_protocol: udp,
           preferred_ip_protocol: ip4}}
  tcp_connect:
    prober: tcp
    timeout: 900ms
    tcp: {{preferred_ip_protocol: ip4}}
  tls_connect:
    prober: tcp
    timeout: 900ms
    tcp:
      preferred_ip_protocol: ip4
      tls: true
      tls_config: {{ca_file: "{ca}", server_name: web.test}}
  https_get:
    prober: http
    timeout: 900ms
    http:
      preferred_ip_protocol: ip4
      tls_config: {{ca_file: "{ca}", server_name: web.test}}
"""


def blackbox_target(kind: str, ports: dict[str, int]) -> tuple[str, str]:
    return {
        "dns": ("dns_udp", f"127.0.0.1:{ports['dns']}"),
        "tcp": ("tcp_connect", f"127.0.0.1:{ports['tcp']}"),
        "tls": ("tls_connect", f"127.0.0.1:{ports['tls']}"),
        "https": ("https_get", f"https://127.0.0.1:{ports['https']}/ok"),
    }[kind]


def _drive(port: int, path: str, rate: float, stop: threading.Event, counts: list[int]) -> None:
    """One client: /probe at `rate` per second on a keep-alive connection, counting answers
    and failed probes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    next_at = time.monotonic()
    while not stop.is_set():
        next_at += 1 / rate
        conn.request("GET", path)
        body = conn.getresponse().read()
        counts[0] += 1
        if not re.search(rb"^probe_success 1$", body, re.MULTILINE):
            counts[1] += 1
        delay = next_at - time.monotonic()
        if delay > 0:
            stop.wait(delay)
    conn.close()


def measure_blackbox(
    kind: str, ports: dict[str, int], rate: float, window: float, workdir: Path
) -> Reading:
    config = workdir / "blackbox.yml"
    config.write_text(BLACKBOX_MODULES.format(ca=certs.ca_pem_path()))
    port = free_port()
    argv = [BLACKBOX, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"]
    module, target = blackbox_target(kind, ports)
    path = f"/probe?module={module}&target={urllib.request.quote(target, safe='')}"
    with launched(argv, port, workdir, "blackbox") as pid:
        stop = threading.Event()
        per_client = [[0, 0] for _ in range(CLIENTS)]
        clients = [
            threading.Thread(target=_drive, args=(port, path, rate / CLIENTS, stop, counts))
            for counts in per_client
        ]
        for client in clients:
            client.start()
        time.sleep(WARMUP_SECONDS)
        cpu0, probes0, started = cpu_seconds(pid), sum(c[0] for c in per_client), time.time()
        failures0 = sum(c[1] for c in per_client)
        time.sleep(window)
        cpu1, elapsed = cpu_seconds(pid), time.time() - started
        probes = max(sum(c[0] for c in per_client) - probes0, 1)
        failures = sum(c[1] for c in per_client) - failures0
        stop.set()
        for client in clients:
            client.join()
        return Reading((cpu1 - cpu0) * 1000 / probes, probes / elapsed, peak_rss_mib(pid), failures)


# --- the report ------------------------------------------------------------------------------


def _median(readings: list[Reading], field: str) -> float:
    return statistics.median(getattr(reading, field) for reading in readings)


def _spread(readings: list[Reading]) -> str:
    values = [reading.cpu_ms_per_probe for reading in readings]
    return f"{min(values):.2f}-{max(values):.2f}"


def _ratio(ours_ms: float, theirs_ms: float) -> str:
    # A window too short for blackbox_exporter to use one clock tick has no ratio to give.
    return f"{ours_ms / theirs_ms:.2f}" if theirs_ms > 0 else "n/a (window too short)"


def report(kind: str, ours: list[Reading], theirs: list[Reading]) -> str:
    ours_ms, theirs_ms = _median(ours, "cpu_ms_per_probe"), _median(theirs, "cpu_ms_per_probe")
    return (
        f"| {kind} | {theirs_ms:.2f} ({_spread(theirs)}) | {ours_ms:.2f} ({_spread(ours)}) "
        f"| {_ratio(ours_ms, theirs_ms)} | {_median(theirs, 'probes_per_second'):.0f} "
        f"| {_median(ours, 'probes_per_second'):.0f} "
        f"| {max(r.peak_rss_mib for r in theirs):.0f} | {max(r.peak_rss_mib for r in ours):.0f} "
        f"| {sum(r.failures for r in theirs)} / {sum(r.failures for r in ours)} |"
    )


def shipped_config_rss(binary: Path, window: float, workdir: Path) -> float:
    """Peak RSS with the shipped config.yaml (on a machine without internet every check fails
    fast, which is what this measures: the footprint, not the verdicts)."""
    port = free_port()
    argv = [str(binary), f"--config.file={REPO / 'config.yaml'}",
            f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    with launched(argv, port, workdir, "shipped") as pid:
        time.sleep(window)
        fetch(f"http://127.0.0.1:{port}/metrics")
        fetch(f"http://127.0.0.1:{port}/")
        return peak_rss_mib(pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=200)
    parser.add_argument("--window", type=float, default=15.0, help="seconds measured per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--venv", type=Path, default=Path("/tmp/reachability-bench-venv"))
    parser.add_argument("--shipped-config", action="store_true",
                        help="also report peak RSS with the shipped config.yaml")  # fmt: skip
    args = parser.parse_args()
    if not shutil.which(BLACKBOX):
        sys.exit(f"{BLACKBOX} not found: apt-get install prometheus-blackbox-exporter")
    binary = install(REPO, args.venv, system_site_packages=False)
    kinds = [kind for kind in args.kinds.split(",") if kind]
    lines = [
        f"{args.checks} checks at 1 s vs blackbox_exporter at the same rate via /probe "
        f"({CLIENTS} clients); {args.rounds} alternating rounds of {args.window:g} s; "
        "CPU = user+sys from /proc; median (min-max)",
        "",
        "| kind | blackbox CPU ms/probe | reachability CPU ms/probe | ratio | blackbox probes/s "
        "| reachability probes/s | blackbox peak RSS MiB | reachability peak RSS MiB "
        "| failed probes (bb / re) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with (
        in_child(_serve, certs.issue("web.test", "127.0.0.1")) as ports,
        tempfile.TemporaryDirectory(prefix="bench-blackbox-") as tmp,
    ):
        workdir = Path(tmp)
        for kind in kinds:
            ours: list[Reading] = []
            theirs: list[Reading] = []
            config = reachability_config(kind, ports, args.checks)
            for round_number in range(args.rounds):
                # Alternate who goes first, so that a trend in the machine's load cancels.
                order = ("ours", "theirs") if round_number % 2 == 0 else ("theirs", "ours")
                for side in order:
                    if side == "ours":
                        ours.append(measure_reachability(binary, config, args.window, workdir))
                    else:
                        rate = float(args.checks)
                        theirs.append(measure_blackbox(kind, ports, rate, args.window, workdir))
                print(f"  {kind} round {round_number + 1}: ours {ours[-1]}, theirs {theirs[-1]}",
                      file=sys.stderr)  # fmt: skip
            lines.append(report(kind, ours, theirs))
        if args.shipped_config:
            rss = shipped_config_rss(binary, 30.0, workdir)
            lines.append("")
            lines.append(f"peak RSS, shipped config.yaml (30 s, no internet): {rss:.0f} MiB")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
