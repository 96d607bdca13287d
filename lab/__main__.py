"""`python -m lab`: bring the censorship lab up, switch scenarios, watch the exporter's
verdicts, tear it down. Run as root from the repository root."""

from __future__ import annotations

import argparse
import os
import sys
import time

from lab import control, labconfig, scenarios, topology
from lab.net import CommandError, Lab


def _table(lab: Lab) -> str:
    snap = control.Exporter(lab, "").snapshot()
    scenario = scenarios.BY_NAME.get(scenarios.current(lab))
    expected = scenario.verdicts() if scenario else {}
    lines = [
        f"scenario: {scenarios.current(lab)}    vantage: {snap.vantage} "
        f"(expected {scenario.vantage if scenario else '?'})",
        f"{'CHECK':22} {'VERDICT':18} EXPECTED",
    ]
    rows = [(check, snap.verdicts.get(check, "-"), expected.get(check, "?"))
            for check in labconfig.CHECKS]  # fmt: skip
    resolvers = scenario.resolver_verdicts() if scenario else {}
    rows += [(key, snap.resolvers.get(key, "-"), resolvers.get(key, "?"))
             for key in labconfig.RESOLVERS]  # fmt: skip
    for check, verdict, want in rows:
        mark = "" if verdict == want else "   <- differs"
        lines.append(f"{check:22} {verdict:18} {want}{mark}")
    return "\n".join(lines)


def cmd_up(lab: Lab, args: argparse.Namespace) -> int:
    config = control.up(lab, args.interval, args.timeout)
    print(f"lab up: namespaces {', '.join(lab.namespaces)}; state in {lab.state}")
    if args.no_exporter:
        print(f"exporter config: {config}")
        print(f"run it: ip netns exec {lab.client} python -m exporter --config.file={config}")
        return 0
    control.Exporter(lab, config).start()
    print(f"exporter running in {lab.client} on 127.0.0.1:9869 (log: {lab.path('exporter.log')})")
    print("next: python -m lab scenario sni-reset; python -m lab watch")
    return 0


def cmd_down(lab: Lab, args: argparse.Namespace) -> int:
    control.down(lab)
    print("lab down")
    return 0


def cmd_list(lab: Lab, args: argparse.Namespace) -> int:
    for scenario in scenarios.SCENARIOS:
        print(f"{scenario.name:20} {scenario.summary}")
    return 0


def cmd_scenario(lab: Lab, args: argparse.Namespace) -> int:
    if not topology.is_up(lab):
        print("the lab is not up: python -m lab up", file=sys.stderr)
        return 1
    scenario = scenarios.BY_NAME.get(args.name)
    if scenario is None:
        print(f"unknown scenario {args.name!r}; see python -m lab list", file=sys.stderr)
        return 2
    scenarios.apply(lab, scenario)
    print(f"{scenario.name}: {scenario.summary}")
    for check, verdict in scenario.expect:
        print(f"  expect {check:18} {verdict}")
    print(f"  expect vantage state {scenario.vantage}")
    return 0


def cmd_lift(lab: Lab, args: argparse.Namespace) -> int:
    scenarios.lift(lab)
    print("clean network")
    return 0


def cmd_watch(lab: Lab, args: argparse.Namespace) -> int:
    try:
        while True:
            text = _table(lab)
            if args.once:
                print(text)
                return 0
            print("\033[2J\033[H" + text, flush=True)
            time.sleep(args.every)
    except KeyboardInterrupt:
        return 0


def cmd_metrics(lab: Lab, args: argparse.Namespace) -> int:
    status, text = control.fetch(lab, args.path)
    print(text, end="")
    return 0 if status == 200 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab",
        description="The censorship lab (run as root). Environment: RXLAB_PREFIX (namespace "
        "prefix, default rxlab-), RXLAB_STATE (state directory, default /run/rxlab).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build the namespaces, start servers and the exporter")
    up.add_argument("--interval", default="10s", help="check interval (default 10s)")
    up.add_argument("--timeout", default="5s", help="check timeout (default 5s)")
    up.add_argument("--no-exporter", action="store_true", help="do not start the exporter")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop everything and remove the lab (idempotent)").set_defaults(
        func=cmd_down
    )
    sub.add_parser("list", help="list the scenarios").set_defaults(func=cmd_list)
    scenario = sub.add_parser("scenario", help="put a scenario in force (lifting the last)")
    scenario.add_argument("name")
    scenario.set_defaults(func=cmd_scenario)
    sub.add_parser("lift", help="back to a clean network").set_defaults(func=cmd_lift)
    watch = sub.add_parser("watch", help="show the verdicts against the scenario's")
    watch.add_argument("--every", type=float, default=2.0)
    watch.add_argument("--once", action="store_true")
    watch.set_defaults(func=cmd_watch)
    metrics = sub.add_parser("metrics", help="GET an exporter endpoint in the client namespace")
    metrics.add_argument("path", nargs="?", default="/metrics")
    metrics.set_defaults(func=cmd_metrics)
    args = parser.parse_args(argv)
    if os.geteuid() != 0 and args.command != "list":
        print("the lab needs root (network namespaces, iptables, tc)", file=sys.stderr)
        return 1
    try:
        result: int = args.func(Lab.from_env(), args)
    except (CommandError, RuntimeError, OSError) as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
