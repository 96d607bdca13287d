"""Scale: the whole exporter core (scheduler, probes, result store, collector) running 1,000
checks against local servers. Reports peak RSS, CPU per probe, scheduler lag and the cost of
a scrape, so that "1,000 checks on a small box" is a measured claim.

    python benchmarks/bench_scale.py [--checks 1000] [--interval 10] [--duration 30]

The checks are a quarter each of dns (UDP, one resolver, no control), tcp, tls and https;
the servers run in a child process so the figures are the exporter's alone. Every run is
expected to be ok: a non-ok verdict is a finding and is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import multiprocessing
import multiprocessing.connection
import os
import resource
import sys
import time
from contextlib import ExitStack

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from prometheus_client import CollectorRegistry, generate_latest

from exporter.config import Config, load_text
from exporter.metrics import ReachabilityCollector, ResultStore
from exporter.scheduler import Scheduler
from peers import certs, webservers
from peers.child import in_child
from peers.dnsserver import DnsServer, records


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


def _config(ports: dict[str, object], count: int, interval: float) -> Config:
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
    text = (
        f"defaults: {{interval: {interval}s, timeout: 5s, ca_file: {certs.ca_pem_path()}}}\n"
        f'resolvers: {{local: "{ports["dns"]}"}}\n'
        "bogons: []\nservices:\n  bench:\n    checks:\n" + "\n".join(lines) + "\n"
    )
    return load_text(text)


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _main(args: argparse.Namespace, ports: dict[str, object]) -> None:
    config = _config(ports, args.checks, args.interval)
    store = ResultStore()
    registry = CollectorRegistry()
    registry.register(ReachabilityCollector(store))
    scheduler = Scheduler(store)
    rss_before = _rss_mib()
    cpu_before, started = _cpu(), time.monotonic()
    await scheduler.apply(config)
    await asyncio.sleep(args.duration)
    cpu_used, elapsed = _cpu() - cpu_before, time.monotonic() - started
    rss_running = _rss_mib()
    snapshot = store.snapshot()
    scrape_started = time.process_time()
    for _ in range(10):
        exposition = generate_latest(registry)
    scrape_cpu = (time.process_time() - scrape_started) / 10
    await scheduler.stop()

    runs = sum(state.runs for state in snapshot.states.values())
    verdicts = collections.Counter(
        str(state.verdict) for state in snapshot.states.values() if state.result
    )
    lag = snapshot.lag
    late = sum(lag.counts[lag.buckets.index(0.1) + 1 :])
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.checks} checks, interval {args.interval:g}s, ran {elapsed:.0f}s: {runs} runs")
    print(f"  verdicts now:      {dict(verdicts)}")
    print(
        f"  RSS:               {rss_before:.1f} MiB before start, {rss_running:.1f} MiB running,"
        f" {_rss_mib():.1f} MiB after 10 scrapes; peak {peak_mib:.1f} MiB"
    )
    print(f"  CPU per probe:     {cpu_used * 1000 / max(runs, 1):.2f} ms (mixed kinds, incl. idle)")
    print(f"  CPU load:          {cpu_used / elapsed * 100:.0f}% of one core")
    print(f"  starts >100ms late: {late} of {sum(lag.counts)}")
    print(f"  scrape:            {scrape_cpu * 1000:.1f} ms CPU, {len(exposition) / 1024:.0f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args()
    with in_child(_serve, certs.issue("web.test", "127.0.0.1")) as ports:
        asyncio.run(_main(args, ports))


if __name__ == "__main__":
    main()
