"""`--once`: run every selected check one time and print the verdicts, for people and
scripts checking a network by hand. The vantage state comes first: when no control service
is reachable, every other verdict only says that this machine is offline."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from typing import Any, TextIO

from exporter.config import Check, Config, Service
from exporter.probeenv import ProbeEnv
from exporter.probes import run_check
from exporter.result import Result
from exporter.vantage import vantage_state
from exporter.verdicts import VantageState, Verdict

# Queries in flight to one resolver at a time. A burst of 60 at once made a home router
# drop about half of them (29 `dns_timeout` where the server said NXDOMAIN); 8 keeps a
# resolver that answers in 50 ms at 160 queries a second, so a full config still resolves
# in well under one timeout, while a slower (overloaded) resolver gets fewer by itself.
DNS_IN_FLIGHT = 8

Row = tuple[Check, Result]

# What the summary says, by vantage state, about the meaning of the other verdicts.
VANTAGE_NOTES = {
    VantageState.ONLINE: "",
    VantageState.OFFLINE: "the vantage is offline (no control service is reachable): "
    "these verdicts say nothing about blocking",
    VantageState.WHITELIST: "the vantage is in whitelist mode (only domestic controls are "
    "reachable): foreign services fail for that reason alone",
    VantageState.UNKNOWN: "the vantage state is unknown (no control services are "
    "configured): a failure may be this machine's network",
}


@dataclasses.dataclass
class Control:
    """One control service as the vantage state saw it."""

    service: Service
    verdict: Verdict  # of its first failing check, or ok

    @property
    def up(self) -> bool:
        return self.verdict is Verdict.OK


@dataclasses.dataclass
class Report:
    rows: list[Row]  # the selected checks, in configuration order
    controls: list[Control]
    state: VantageState

    @property
    def ok(self) -> bool:
        return all(result.ok for _, result in self.rows)

    def summary(self) -> str:
        failing = sum(1 for _, result in self.rows if not result.ok)
        text = f"{len(self.rows)} checks: {len(self.rows) - failing} ok, {failing} not ok"
        note = VANTAGE_NOTES[self.state]
        return f"{text}; {note}" if note else text


async def run(
    config: Config, services: list[str], *, concurrency: int, dns_in_flight: int = DNS_IN_FLIGHT
) -> Report:
    """Run the checks of `services` (all when empty) and, for the vantage state, those of
    every control service even when not selected."""
    controls = [s for s in config.services.values() if s.role == "control"]
    selected = [c for c in config.checks() if not services or c.service in services]
    wanted = {c.key: c for c in selected}
    for service in controls:
        wanted.update((c.key, c) for c in service.checks)
    env = ProbeEnv(config, dns_in_flight=dns_in_flight)
    slots = asyncio.Semaphore(concurrency)

    async def bounded(check: Check) -> Result:
        async with slots:
            return await run_check(check, env)

    try:
        results = dict(
            zip(
                wanted,
                await asyncio.gather(*(bounded(c) for c in wanted.values())),
                strict=True,
            )
        )
    finally:
        await env.aclose()
    seen = [Control(s, _service_verdict(s, results)) for s in controls]
    state = vantage_state((c.service.scope, c.up) for c in seen)
    return Report([(c, results[c.key]) for c in selected], seen, state)


def _service_verdict(service: Service, results: dict[tuple[str, str], Result]) -> Verdict:
    """As reachability_service_verdict: the verdict of the first failing check, or ok."""
    verdicts = (results[check.key].verdict for check in service.checks)
    return next((v for v in verdicts if v is not Verdict.OK), Verdict.OK)


def vantage_line(report: Report) -> str:
    controls = ", ".join(f"{c.service.name} {c.verdict}" for c in report.controls)
    return f"VANTAGE {report.state}" + (f" (controls: {controls})" if controls else "")


def print_table(report: Report, out: TextIO = sys.stdout) -> None:
    out.write(vantage_line(report) + "\n\n")
    header = ("SERVICE", "CHECK", "KIND", "VERDICT", "DURATION", "DETAIL")
    table = [
        (c.service, c.name, c.kind, str(r.verdict), f"{r.duration * 1000:.0f}ms", _detail(r))
        for c, r in report.rows
    ]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(5)]
    for row in [header, *table]:
        cells = [cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)]
        out.write("  ".join([*cells, row[5]]).rstrip() + "\n")
    out.write(f"\nSUMMARY {report.summary()}\n")


def print_json(report: Report, out: TextIO = sys.stdout) -> None:
    json.dump(to_json(report), out, indent=2)
    out.write("\n")


def to_json(report: Report) -> dict[str, Any]:
    failing = sum(1 for _, result in report.rows if not result.ok)
    return {
        "vantage": {
            "state": str(report.state),
            "controls": [
                {"service": c.service.name, "scope": c.service.scope,
                 "verdict": str(c.verdict), "up": c.up}
                for c in report.controls
            ],
        },
        "checks": [
            {"service": c.service, "check": c.name, "kind": c.kind, "target": c.target,
             **r.to_dict()}
            for c, r in report.rows
        ],
        "summary": {
            "checks": len(report.rows),
            "ok": len(report.rows) - failing,
            "not_ok": failing,
            "note": VANTAGE_NOTES[report.state],
        },
    }  # fmt: skip


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
