"""CPU cost of the dns probe: CPU seconds per 1,000 probes against a local DNS server, to
compare with blackbox_exporter (about 0.55 ms per dns probe on the reference machine, against
a bare-asyncio floor of about 0.4 ms).

    python benchmarks/bench_dns.py [--count 1000] [--concurrency 10] [--profile CASE] [CASE ...]

Cases: udp (one resolver, no control), udp+control (the shape of a real check: one resolver
compared with a control), tcp, dot, doh. The server runs in a child process, so the figures
are the prober's own CPU (user + system of this process). For reference the same loop also
times a bare asyncio UDP exchange of a prebuilt query and dnspython's dns.asyncquery.udp.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import multiprocessing.connection
import os
import pstats
import resource
import socket
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import dns.asyncquery
import dns.message

from exporter.config import Check, Config, load_text
from exporter.probeenv import ProbeEnv
from exporter.probes import run_check
from peers import certs
from peers.child import in_child
from peers.dnsserver import DnsServer, records

NAME = "bench.test"
CASES = {
    "udp": "[udp], control: none",
    "udp+control": "[udp], control: control",
    "tcp": "[tcp], control: none",
    "dot": "[dot], control: none",
    "doh": "[doh], control: none",
}


def _serve(pipe: multiprocessing.connection.Connection, cert_and_key: tuple[str, str]) -> None:
    with DnsServer({NAME: records("157.240.1.1")}, cert=cert_and_key) as server:
        pipe.send(
            {
                "udp": server.udp_url,
                "tcp": server.tcp_url,
                "dot": server.tls_url,
                "doh": server.https_url,
                "port": server.port,
            }
        )
        pipe.recv()  # until the parent is done


def _config(urls: dict[str, str]) -> Config:
    checks = "\n".join(
        f"      - {{name: {name.replace('+', '-')}, kind: dns, target: {NAME}, resolvers: {spec}}}"
        for name, spec in CASES.items()
    )
    text = f"""
defaults: {{ca_file: {certs.ca_pem_path()}, timeout: 5s}}
resolvers:
  udp: {urls["udp"]}
  tcp: {urls["tcp"]}
  dot: {urls["dot"]}
  doh: {urls["doh"]}
  control: {urls["udp"]}
bogons: []
services:
  bench:
    checks:
{checks}
"""
    return load_text(textwrap.dedent(text))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(
    name: str, once: Callable[[], Awaitable[object]], count: int, concurrency: int
) -> float:
    for _ in range(min(50, count)):  # warm up: imports, caches, SSL contexts
        await once()
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await once()

    started_cpu, started = _cpu(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    cpu, wall = _cpu() - started_cpu, time.perf_counter() - started
    per_thousand = cpu * 1000 / count
    print(f"{name:16} {per_thousand:6.3f} CPU s / 1,000 probes   ({wall:.2f} s wall)")
    return per_thousand


async def _main(args: argparse.Namespace, urls: dict[str, str]) -> None:
    config = _config(urls)
    checks: dict[str, Check] = {check.name: check for check in config.checks()}
    env = ProbeEnv(config)
    port = int(urls["port"])

    def prober(case: str) -> Callable[[], Awaitable[object]]:
        check = checks[case.replace("+", "-")]

        async def once() -> object:
            result = await run_check(check, env)
            if not result.ok:
                raise SystemExit(f"{case}: {result.verdict} {result.detail}")
            return result

        return once

    wire = dns.message.make_query(NAME, "A").to_wire()

    async def bare_udp() -> None:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect(("127.0.0.1", port))
            await loop.sock_sendall(sock, wire)
            await loop.sock_recv(sock, 65535)

    async def dnspython_udp() -> None:
        await dns.asyncquery.udp(dns.message.make_query(NAME, "A"), "127.0.0.1", 5, port)

    cases = args.cases or list(CASES)
    if args.profile:
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        await _measure(args.profile, prober(args.profile), args.count, args.concurrency)
        profiler.disable()
        stats = pstats.Stats(profiler).sort_stats(os.environ.get("SORT", "tottime"))
        stats.print_stats(int(os.environ.get("LINES", "30")))
        await env.aclose()
        return
    print(f"{args.count} probes each, {args.concurrency} at a time")
    for case in cases:
        await _measure(case, prober(case), args.count, args.concurrency)
    if not args.cases:
        print("references:")
        await _measure("bare asyncio udp", bare_udp, args.count, args.concurrency)
        await _measure("dnspython udp", dnspython_udp, args.count, args.concurrency)
    await env.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--profile", metavar="CASE", help="profile one case instead")
    parser.add_argument("cases", nargs="*", help=f"{', '.join(CASES)} (default: all)")
    args = parser.parse_args()
    with in_child(_serve, certs.issue("127.0.0.1")) as urls:
        asyncio.run(_main(args, urls))


if __name__ == "__main__":
    main()
