"""Detection latency in the censorship lab: from a censor rule put in force to the verdict
changing in /metrics, and from the rule lifted to `ok` again, with the exporter running at a
production-like interval (10 s, timeout 5 s). Needs root; takes several minutes.

    python benchmarks/bench_detection.py [--interval 10s] [--timeout 5s] [--repeat 3]
                                         [--scenario NAME ...]

Rules are applied and lifted at random moments relative to the checks' schedules, so the
figures spread between "the next run starts at once" and "the next run starts one interval
later"; a verdict that needs a timeout to show (tcp_timeout, udp_timeout, stalled) arrives up
to one timeout later still.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lab import control, scenarios
from lab.control import Exporter
from lab.net import Lab

BENCH_LAB = Lab(f"rxb{os.getpid()}-", Path(f"/run/rxlab-bench-{os.getpid()}"))
DEFAULT_SCENARIOS = (
    "dns-nxdomain",
    "syn-drop",
    "sni-reset",
    "sni-drop",
    "freeze-16k",
    "throttle",
    "udp-drop",
    "whitelist",
    "packets-reply",
    "packets-original",
    "upload-16k",
    "tls-fingerprint",
    "dc-silent-proxy",
)


def _flip_times(
    exporter: Exporter, want: dict[str, str], vantage: str | None, limit: float
) -> tuple[dict[str, float], float | None]:
    """Seconds until each check in `want` showed its verdict (and the vantage state its), or
    missing if it did not within `limit`."""
    started = time.monotonic()
    flipped: dict[str, float] = {}
    vantage_at: float | None = None
    while time.monotonic() - started < limit:
        snap = exporter.snapshot()
        now = time.monotonic() - started
        for check, verdict in want.items():
            if check not in flipped and snap.verdicts.get(check) == verdict:
                flipped[check] = now
        if vantage_at is None and (vantage is None or snap.vantage == vantage):
            vantage_at = now
        if len(flipped) == len(want) and vantage_at is not None:
            break
        time.sleep(0.05)
    return flipped, vantage_at


def _summary(values: list[float]) -> str:
    if not values:
        return "-"
    return (
        f"{min(values):5.1f} {statistics.median(values):5.1f} {max(values):5.1f}  (n={len(values)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", default="10s")
    parser.add_argument("--timeout", default="5s")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenario", action="append", choices=sorted(scenarios.BY_NAME))
    args = parser.parse_args()
    names = args.scenario or list(DEFAULT_SCENARIOS)
    interval = float(args.interval.rstrip("s"))
    timeout = float(args.timeout.rstrip("s"))
    limit = 2 * (interval + timeout) + 5
    clean = scenarios.BY_NAME["clean"].verdicts()
    rows = []
    try:
        config = control.up(BENCH_LAB, args.interval, args.timeout)
        exporter = Exporter(BENCH_LAB, config).start()
        if not control.wait_for(lambda: exporter.snapshot().verdicts == clean, limit):
            raise SystemExit(f"the clean lab is not all ok: {exporter.snapshot().verdicts}")
        for name in names:
            scenario = scenarios.BY_NAME[name]
            changed = dict(scenario.expect)
            detect_first, detect_all, recover_all, vantage_times = [], [], [], []
            for _ in range(args.repeat):
                # A random phase against the checks' schedules.
                time.sleep(random.uniform(0, interval))
                scenarios.apply(BENCH_LAB, scenario)
                vantage = scenario.vantage if scenario.vantage != "online" else None
                flipped, vantage_at = _flip_times(exporter, changed, vantage, limit)
                if flipped:
                    detect_first.append(min(flipped.values()))
                if len(flipped) == len(changed):
                    detect_all.append(max(flipped.values()))
                if vantage is not None and vantage_at is not None:
                    vantage_times.append(vantage_at)
                # Lifting right after the last check flipped would measure the schedule
                # (one interval, or interval minus timeout), not the exporter: lift at a
                # random phase too.
                time.sleep(random.uniform(0, interval))
                scenarios.lift(BENCH_LAB)
                back = {check: "ok" for check in changed}
                recovered, _ = _flip_times(exporter, back, "online", limit)
                if len(recovered) == len(back):
                    recover_all.append(max(recovered.values()))
                print(
                    f"  {name}: first {min(flipped.values(), default=float('nan')):.1f}s, "
                    f"all {len(flipped)}/{len(changed)} by "
                    f"{max(flipped.values(), default=float('nan')):.1f}s, recovered by "
                    f"{max(recovered.values(), default=float('nan')):.1f}s",
                    flush=True,
                )
            rows.append((name, detect_first, detect_all, recover_all, vantage_times))
        exporter.stop()
    finally:
        control.down(BENCH_LAB)
    print(f"\ninterval {args.interval}, timeout {args.timeout}; seconds min median max")
    print(f"{'scenario':14} {'first check':22} {'every check':22} {'recovery':22}")
    for name, first, every, recovery, vantage_times in rows:
        line = f"{name:14} {_summary(first):22} {_summary(every):22} {_summary(recovery):22}"
        if vantage_times:
            line += f"  vantage state: {_summary(vantage_times)}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
