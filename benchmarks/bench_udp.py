"""CPU cost of the UDP probes: CPU seconds per 1,000 stun probes and per 1,000 quic
handshakes against local servers, and a bare-asyncio STUN exchange as the floor.

    python benchmarks/bench_udp.py [--count 1000] [--quic-count 200] [--concurrency 10]

The servers run in a child process, so the figures are the prober's own CPU (user + system
of this process) and nothing of the peers'.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import os
import resource
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from exporter.config import load_text
from exporter.probeenv import ProbeEnv
from exporter.probes import run_check
from exporter.probes.stun import binding_request, parse_response
from exporter.verdicts import Verdict
from peers import certs, quicserver, stunserver
from peers.child import in_child


def _serve(pipe: multiprocessing.connection.Connection, cert_and_key: tuple[str, str]) -> None:
    async def main() -> None:
        stun, stun_port = await stunserver.start()
        quic, quic_port = await quicserver.start(cert_and_key)
        pipe.send({"stun": stun_port, "quic": quic_port})
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        stun.close()
        quic.close()

    asyncio.run(main())


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(
    once: Callable[[], Awaitable[object]], count: int, concurrency: int
) -> tuple[float, float]:
    """(CPU seconds per 1,000 runs, wall seconds) of `once`, `concurrency` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await once()

    for _ in range(min(count, 20)):  # warm up: imports, contexts, caches
        await once()
    cpu, wall = _cpu(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return (_cpu() - cpu) * 1000 / count, time.perf_counter() - wall


class _Floor(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.answer.done():
            self.answer.set_result(data)


async def bare_stun(port: int) -> None:
    """The least any asyncio STUN client does: a socket, one request, one parsed answer."""
    loop = asyncio.get_running_loop()
    txid = os.urandom(12)
    transport, client = await loop.create_datagram_endpoint(_Floor, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(binding_request(txid))
        parse_response(await asyncio.wait_for(client.answer, 2), txid)
    finally:
        transport.close()


async def main_async(args: argparse.Namespace, ports: dict[str, int]) -> None:
    config = load_text(
        textwrap.dedent(f"""
        defaults: {{ca_file: {certs.ca_pem_path()}, timeout: 5s}}
        bogons: []
        services:
          bench:
            checks:
              - {{name: stun, kind: stun, target: "127.0.0.1:{ports["stun"]}"}}
              - {{name: quic, kind: quic, target: "quic.test:{ports["quic"]}",
                  address: [127.0.0.1]}}
        """)
    )
    env = ProbeEnv(config)
    checks = {check.name: check for check in config.checks()}

    async def probe(name: str) -> None:
        result = await run_check(checks[name], env)
        if result.verdict is not Verdict.OK:
            raise RuntimeError(f"{name}: {result.verdict}: {result.detail}")

    rows = [
        ("stun probe", lambda: probe("stun"), args.count),
        ("bare asyncio STUN exchange", lambda: bare_stun(ports["stun"]), args.count),
        ("quic handshake probe", lambda: probe("quic"), args.quic_count),
    ]
    print(f"concurrency {args.concurrency}")
    for label, once, count in rows:
        per_thousand, wall = await _measure(once, count, args.concurrency)
        print(
            f"{label:28} {per_thousand:7.2f} CPU s per 1,000  "
            f"({per_thousand:.3f} ms each; {count} in {wall:.2f} s wall)"
        )
    await env.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--quic-count", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    with in_child(_serve, certs.issue("quic.test")) as ports:
        asyncio.run(main_async(args, ports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
