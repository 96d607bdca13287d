"""Scale: the INSTALLED exporter process running thousands of checks against local peers.
Reports scheduler lag p50/p99, peak RSS (VmHWM), the wall time and size of a `/metrics`
scrape while it runs, and CPU (user + system from /proc), so that "10,000 checks on a small
box" is a measured claim about what a user runs, not about pieces timed in-process.

    python benchmarks/bench_scale.py [--checks 10000 --checks 200] [--interval 60]
        [--duration 150] [--checkout .] [--checkout /path/to/other/checkout] [--rounds 1]

Each checkout is installed into its own private venv under /tmp (reused when the checkout's
commit is unchanged); with two checkouts the rounds alternate between them, so a busy shared
machine weighs on both alike. The checks are a quarter each of dns (UDP, one resolver, no
control), tcp, tls and https; the peers run in a child process of this script. A scrape runs
every 10 s, as Prometheus would, once plain and once with Accept-Encoding: gzip (what
Prometheus sends). Every run is expected to be ok: other verdicts are printed.

A scrape is timed from connect to its last byte by a client that reads into one buffer, as
Prometheus and curl do: urllib alone takes 40-50 ms to read 40 MB from a trivial server
(curl 15-30 ms), which is the client's time, not the exporter's. The first gzipped scrape
after start is reported apart: it compresses the whole body (later ones compress what
changed), once per start.

With --rss-trace, VmRSS is sampled every 0.2 s from the launch on, and where the peak falls
is printed: during the configuration load (before /-/ready), during a scrape, or between
them, with RSS every 10 s, so that a peak can be told from a steady climb; and the peak of
the exporter's child processes (the one that loads the configuration), sampled alike.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import multiprocessing.connection
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from prometheus_client.parser import text_string_to_metric_families

from peers import certs, webservers
from peers.child import in_child
from peers.dnsserver import DnsServer, records
from peers.listeners import free_port

SCRAPE_EVERY = 10.0
# Room for a 10,000-check body (40 MB): a scrape reads into it without copying.
SCRAPE_BUFFER = 96 << 20
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _serve(pipe: multiprocessing.connection.Connection, cert_and_key: tuple[str, str]) -> None:
    context = certs.server_context(cert_and_key)
    with ExitStack() as stack:
        dns = stack.enter_context(DnsServer({"bench.test": records("127.0.0.1")}))
        ports = {
            "dns": dns.udp_url,
            "https": stack.enter_context(webservers.serve(webservers.http_handler(context))),
            "tls": stack.enter_context(webservers.serve(webservers.tls_handler(context))),
        }
        pipe.send(ports)
        pipe.recv()


def config_text(ports: dict[str, object], count: int, interval: float, ca_file: str) -> str:
    kinds = [
        "{{name: c{i}, kind: dns, target: bench.test, resolvers: [local]}}",
        "{{name: c{i}, kind: tcp, target: \"127.0.0.1:{https}\"}}",
        "{{name: c{i}, kind: tls, target: \"web.test:{tls}\", address: [127.0.0.1]}}",
        "{{name: c{i}, kind: http, target: \"https://web.test:{https}/ok\", address: [127.0.0.1]}}",
    ]  # fmt: skip
    lines = [
        "      - " + kinds[i % 4].format(i=i, https=ports["https"], tls=ports["tls"])
        for i in range(count)
    ]
    return (
        f"defaults: {{interval: {interval:g}s, timeout: 5s, ca_file: {ca_file}}}\n"
        f'resolvers: {{local: "{ports["dns"]}"}}\n'
        "bogons: []\nservices:\n  bench:\n    checks:\n" + "\n".join(lines) + "\n"
    )


def install(checkout: Path) -> Path:
    """A private venv with `checkout` installed (not editable): what a user runs."""
    revision = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(checkout), "diff", "HEAD"], capture_output=True, text=True
    ).stdout
    tag = hashlib.sha256((str(checkout.resolve()) + revision + dirty).encode()).hexdigest()[:12]
    venv = Path(tempfile.gettempdir()) / f"bench-scale-{tag}"
    if not (venv / "bin" / "reachability-exporter").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
             str(checkout)],
            check=True,
        )  # fmt: skip
    return venv


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def _proc_status(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class _RssTrace:
    """VmRSS of `pid` every 0.2 s in a thread, with the spans (ready, scrapes) it falls in."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = time.monotonic()
        self.samples: list[tuple[float, float]] = []
        self.spans: list[tuple[str, float, float]] = []
        # The exporter's children (it loads its configuration in one): their memory is
        # paid too, while they live.
        self.child_peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                rss = _proc_status(self.pid, "VmRSS")
            except OSError:
                return
            self.samples.append((time.monotonic() - self.started, rss))
            self._sample_children()
            self._stop.wait(0.2)

    def _sample_children(self) -> None:
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return
        for child in children:
            # OSError: it ended between the listing and the read.
            with contextlib.suppress(OSError):
                self.child_peak = max(self.child_peak, _proc_status(int(child), "VmHWM"))

    def span(self, name: str, begin: float, end: float) -> None:
        self.spans.append((name, begin - self.started, end - self.started))

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        if not self.samples:
            return "no samples"
        peak_at, peak = max(self.samples, key=lambda s: s[1])
        where = "between scrapes"
        for name, begin, end in self.spans:
            if begin <= peak_at <= end + 0.2:
                where = name
        ready = next((end for name, _, end in self.spans if name == "load"), 0.0)
        before = max((r for t, r in self.samples if t <= ready), default=0.0)
        every = [f"{r:.0f}" for t, r in self.samples[:: int(10 / 0.2)]]
        return (
            f"RSS peak {peak:.0f} MiB at {peak_at:.1f}s ({where}); max before ready "
            f"{before:.0f} MiB (ready at {ready:.1f}s); every 10 s: {' '.join(every)}"
            + (
                f"; a child process (the configuration load) peaked at {self.child_peak:.0f} MiB"
                if self.child_peak
                else ""
            )
        )


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """The upper bound of the bucket that holds quantile q (the histogram's own resolution)."""
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return float("inf")


def scrape(port: int, gzip: bool, buffer: bytearray) -> tuple[float, bytes]:
    """GET /metrics over a raw socket, read to the end into `buffer`: the seconds from
    connect to the last byte, and the body."""
    begin = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        encoding = b"Accept-Encoding: gzip\r\n" if gzip else b""
        sock.sendall(
            b"GET /metrics HTTP/1.1\r\nHost: bench\r\n" + encoding + b"Connection: close\r\n\r\n"
        )
        view, size = memoryview(buffer), 0
        while received := sock.recv_into(view[size:]):
            size += received
            if size == len(buffer):
                raise RuntimeError(f"a body over {len(buffer)} bytes: raise SCRAPE_BUFFER")
    seconds = time.monotonic() - begin
    head, _, body = bytes(view[:size]).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"scrape failed: {head[:200]!r}")
    return seconds, body


def _ms(seconds: list[float]) -> str:
    return "/".join(f"{s * 1000:.0f}" for s in (statistics.median(seconds), max(seconds)))


def run_one(venv: Path, ports: dict[str, object], count: int, args: argparse.Namespace) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(config_text(ports, count, args.interval, str(certs.ca_pem_path())))
        log = (Path(tmp) / "exporter.log").open("wb")
        proc = subprocess.Popen(
            [str(venv / "bin" / "reachability-exporter"), f"--config.file={config}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        trace = _RssTrace(proc.pid) if args.rss_trace else None
        launched = time.monotonic()
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(url + "/-/ready", timeout=5):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError((Path(tmp) / "exporter.log").read_text()) from None
                    time.sleep(0.2)
            started, cpu_started = time.monotonic(), _proc_cpu(proc.pid)
            if trace is not None:
                trace.span("load", launched, started)
            scrapes: list[float] = []
            gzip_scrapes: list[float] = []
            buffer = bytearray(SCRAPE_BUFFER)
            body = gzipped = b""
            while time.monotonic() - started < args.duration:
                time.sleep(SCRAPE_EVERY)
                seconds, body = scrape(port, False, buffer)
                scrapes.append(seconds)
                if trace is not None:
                    trace.span("plain scrape", time.monotonic() - seconds, time.monotonic())
                time.sleep(1.0)
                seconds, gzipped = scrape(port, True, buffer)
                gzip_scrapes.append(seconds)
                if trace is not None:
                    trace.span("gzip scrape", time.monotonic() - seconds, time.monotonic())
            cpu = _proc_cpu(proc.pid) - cpu_started
            elapsed = time.monotonic() - started
            peak = _proc_status(proc.pid, "VmHWM")
            rss = _proc_status(proc.pid, "VmRSS")
        finally:
            rss_trace = trace.stop() if trace is not None else ""
            proc.terminate()
            proc.wait(20)
    lag: list[tuple[float, float]] = []
    runs = 0.0
    verdicts: dict[str, int] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "reachability_exporter_scheduler_lag_seconds_bucket":
                lag.append((float(sample.labels["le"]), sample.value))
            elif sample.name == "reachability_check_runs_total":
                runs += sample.value
            elif sample.name == "reachability_check_verdict" and sample.value == 1:
                verdicts[sample.labels["verdict"]] = verdicts.get(sample.labels["verdict"], 0) + 1
    return {
        "runs": runs, "cpu": cpu, "elapsed": elapsed, "peak": peak, "rss": rss,
        "lag_p50": _quantile(lag, 0.5), "lag_p99": _quantile(lag, 0.99),
        "scrapes": scrapes, "size": len(body), "verdicts": verdicts, "rss_trace": rss_trace,
        "gzip_first": gzip_scrapes[0], "gzip_scrapes": gzip_scrapes[1:],
        "gzip_size": len(gzipped),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, action="append")
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--duration", type=float, default=150.0)
    parser.add_argument("--checkout", type=Path, action="append")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rss-trace", action="store_true")
    args = parser.parse_args()
    checkouts = args.checkout or [Path(__file__).resolve().parents[1]]
    venvs = [install(checkout) for checkout in checkouts]
    print("machine: 2 cores shared with other work; figures are noisy, compare ratios")
    with in_child(_serve, certs.issue("web.test", "127.0.0.1")) as ports:
        for count in args.checks or [10000, 200]:
            for round_ in range(args.rounds):
                for checkout, venv in zip(checkouts, venvs, strict=True):
                    r = run_one(venv, ports, count, args)
                    print(
                        f"{count} checks @{args.interval:g}s round {round_ + 1} {checkout}: "
                        f"{r['runs']:.0f} runs in {r['elapsed']:.0f}s; "
                        f"lag p50 <= {r['lag_p50']:g}s p99 <= {r['lag_p99']:g}s; "
                        f"peak RSS {r['peak']:.1f} MiB (now {r['rss']:.1f}); "
                        f"plain scrape median/max {_ms(r['scrapes'])} ms "
                        f"({r['size'] / 1024:.0f} KiB); gzip scrape first "
                        f"{r['gzip_first'] * 1000:.0f} ms, then median/max "
                        f"{_ms(r['gzip_scrapes'])} ms ({r['gzip_size'] / 1024:.0f} KiB); "
                        f"CPU {r['cpu']:.1f}s = {r['cpu'] * 1000 / max(r['runs'], 1):.2f} ms/run"
                        f" ({r['cpu'] / r['elapsed'] * 100:.0f}% of a core); "
                        f"verdicts {r['verdicts']}"
                        + (f"\n    {r['rss_trace']}" if r["rss_trace"] else ""),
                        flush=True,
                    )


if __name__ == "__main__":
    main()
