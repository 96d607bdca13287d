"""`--once`: run every selected check one time and print the verdicts, for people and
scripts checking a network by hand."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TextIO

from exporter.config import Check, Config
from exporter.probeenv import ProbeEnv
from exporter.probes import run_check
from exporter.result import Result

# Enough parallelism to finish a full config in about one timeout, without a burst that a
# home router or a rate-limiting censor would notice.
ONCE_CONCURRENCY = 32


async def run(config: Config, services: list[str]) -> list[tuple[Check, Result]]:
    checks = [c for c in config.checks() if not services or c.service in services]
    env = ProbeEnv(config)
    slots = asyncio.Semaphore(ONCE_CONCURRENCY)

    async def bounded(check: Check) -> Result:
        async with slots:
            return await run_check(check, env)

    try:
        results = await asyncio.gather(*(bounded(c) for c in checks))
    finally:
        await env.aclose()
    return list(zip(checks, results, strict=True))


def print_table(rows: list[tuple[Check, Result]], out: TextIO = sys.stdout) -> None:
    header = ("SERVICE", "CHECK", "KIND", "VERDICT", "DURATION", "DETAIL")
    table = [
        (c.service, c.name, c.kind, str(r.verdict), f"{r.duration * 1000:.0f}ms", _detail(r))
        for c, r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(5)]
    for row in [header, *table]:
        cells = [cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)]
        out.write("  ".join([*cells, row[5]]).rstrip() + "\n")


def print_json(rows: list[tuple[Check, Result]], out: TextIO = sys.stdout) -> None:
    document = [
        {"service": c.service, "check": c.name, "kind": c.kind, "target": c.target,
         **r.to_dict()}
        for c, r in rows
    ]  # fmt: skip
    json.dump(document, out, indent=2)
    out.write("\n")


def _detail(result: Result) -> str:
    if result.ok:
        parts = []
        if result.status_code is not None:
            parts.append(f"status {result.status_code}")
        if result.address:
            parts.append(f"via {result.address}")
        elif result.addresses:
            parts.append(" ".join(result.addresses[:3]))
        if result.rate is not None:
            parts.append(f"{result.rate * 8 / 1000:.0f} kbit/s")
        return ", ".join(parts)
    return " ".join(result.detail.split())[:160]
