"""CPU cost of the tcp, tls and http probes: CPU seconds per 1,000 probes against local
servers, to compare with blackbox_exporter (about 0.63 / 1.35 / 1.64 ms per tcp / tls / http
probe on the reference machine, whose bare-asyncio floor was about 0.1 / 1.15 / 1.15 ms).

    python benchmarks/bench_net.py [--count 1000] [--concurrency 10] [--rounds 3]
                                   [--profile KIND] [KIND ...]

KIND: tcp, tls, http (plain) and https (http over TLS; blackbox's "http" figure). The
servers run in a child process, so the figures are the prober's own CPU (user + system of
this process) and nothing of the peers'. Each probe goes through run_check, as the scheduler
runs it. For scale, the same loop times the floors (a bare asyncio connect, TLS handshake,
HTTPS request) and a stock httpx request. Rounds interleave the kinds and the best round
counts, since other load on the machine only ever adds CPU time. `--profile KIND` prints a
CPU-time profile of one kind instead.
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
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import httpx

from exporter.config import Config, load_text
from exporter.probeenv import ProbeEnv
from exporter.probes import run_check
from peers import certs, webservers
from peers.child import in_child


def _serve(pipe: multiprocessing.connection.Connection, cert_and_key: tuple[str, str]) -> None:
    context = certs.server_context(cert_and_key)
    with ExitStack() as stack:
        ports = {
            "http": stack.enter_context(webservers.serve(webservers.http_handler())),
            "https": stack.enter_context(webservers.serve(webservers.http_handler(context))),
            "tls": stack.enter_context(webservers.serve(webservers.tls_handler(context))),
        }
        pipe.send(ports)
        pipe.recv()  # until the parent is done


def _config(ports: dict[str, int]) -> Config:
    text = f"""
        defaults: {{ca_file: {certs.ca_pem_path()}, timeout: 5s}}
        bogons: []
        blockpages: ['{webservers.BLOCKPAGE_PATTERN}']
        services:
          bench:
            checks:
              - {{name: tcp, kind: tcp, target: "127.0.0.1:{ports["http"]}"}}
              - {{name: tls, kind: tls, target: "web.test:{ports["tls"]}", address: [127.0.0.1]}}
              - {{name: http, kind: http, target: "http://127.0.0.1:{ports["http"]}/ok"}}
              - name: https
                kind: http
                target: "https://web.test:{ports["https"]}/ok"
                address: [127.0.0.1]
    """
    return load_text(textwrap.dedent(text))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(once: Callable[[], Awaitable[object]], count: int, concurrency: int) -> float:
    """CPU seconds per 1,000 runs of `once`, `concurrency` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await once()

    started = _cpu()
    await asyncio.gather(*(one() for _ in range(count)))
    return (_cpu() - started) * 1000 / count


async def _main(args: argparse.Namespace, ports: dict[str, int]) -> None:
    config = _config(ports)
    checks = {check.name: check for check in config.checks()}
    env = ProbeEnv(config)

    def prober(name: str) -> Callable[[], Awaitable[object]]:
        async def once() -> object:
            result = await run_check(checks[name], env)
            if not result.ok:
                raise SystemExit(f"{name}: {result.verdict} {result.detail}")
            return result

        return once

    async def bare_connect() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", ports["http"])
        writer.transport.abort()

    tls_context = env.ssl_context(True)

    async def bare_tls() -> None:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", ports["tls"], ssl=tls_context, server_hostname="web.test"
        )
        writer.transport.abort()

    async def bare_https() -> None:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", ports["https"], ssl=tls_context, server_hostname="web.test"
        )
        writer.write(b"GET /ok HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n")
        await reader.read()
        writer.transport.abort()

    stock = httpx.AsyncClient(verify=tls_context)

    async def stock_httpx() -> None:
        response = await stock.get(
            f"https://127.0.0.1:{ports['https']}/ok", headers={"Connection": "close"}
        )
        response.raise_for_status()

    runs: dict[str, Callable[[], Awaitable[object]]] = {
        kind: prober(kind) for kind in args.kinds or ["tcp", "tls", "http", "https"]
    }
    if not args.kinds:
        runs |= {
            "bare connect": bare_connect,
            "bare tls": bare_tls,
            "bare https": bare_https,
            "stock httpx": stock_httpx,
        }
    for once in runs.values():  # warm up: imports, caches, SSL contexts
        for _ in range(50):
            await once()
    if args.profile:
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        await _measure(prober(args.profile), args.count, args.concurrency)
        profiler.disable()
        stats = pstats.Stats(profiler).sort_stats(os.environ.get("SORT", "tottime"))
        stats.print_stats(int(os.environ.get("LINES", "30")))
        return
    # Rounds interleave the kinds, and the best round counts: on a shared machine other
    # work only ever adds CPU time (cache misses, contention), never removes it.
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, once in runs.items():
            figure = await _measure(once, args.count, args.concurrency)
            best[name] = min(best.get(name, figure), figure)
    print(
        f"CPU seconds per 1,000 probes ({args.count} per round, {args.concurrency} at a time,"
        f" best of {args.rounds} rounds):"
    )
    for name, figure in best.items():
        print(f"  {name:13} {figure:5.2f}")
    await stock.aclose()
    await env.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", metavar="KIND", help="profile one kind instead")
    parser.add_argument("kinds", nargs="*", help="tcp, tls, http, https (default: all)")
    args = parser.parse_args()
    with in_child(_serve, certs.issue("web.test", "127.0.0.1")) as ports:
        asyncio.run(_main(args, ports))


if __name__ == "__main__":
    main()
