"""The command line (README "Command line"): flags in the Go exporters' dotted style,
logging set-up, and the three ways to run (serve, --config.check, --once). Exit codes:
0 success, 1 failure, 2 usage or configuration error."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable

from exporter import __version__, fdlimit, journal, logs, once
from exporter import config as config_module
from exporter.app import Exporter
from exporter.config import Config
from exporter.config import values as units
from exporter.config.childload import load_file_in_child
from exporter.errors import ConfigError, Problem
from exporter.scheduler import DEFAULT_CONCURRENCY
from exporter.webconfig import WebConfig, WebConfigError, WebConfigWatcher
from exporter.webconfig import load as load_web_config
from exporter.webconfig import source as web_config_source
from exporter.webserver import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_TELEMETRY_PATH,
    WebServer,
    parse_listen_address,
)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DEFAULT_LISTEN = ":9869"
DEFAULT_CONFIG = "config.yaml"
# Where deploy/install.sh puts the configuration and the systemd unit reads it: found
# without --config.file from any directory, as /etc/prometheus/prometheus.yml is for
# Debian's prometheus.
INSTALLED_CONFIG = "/etc/reachability-exporter/config.yaml"
# Paths the other endpoints own: the metrics cannot move onto them.
_RESERVED_PATHS = frozenset(
    {"/", "/probe", "/api/v1/status", "/-/healthy", "/-/ready", "/-/reload"}
)
# At most this share of the probe slots goes to /probe runs, so the schedule keeps the rest.
PROBE_SHARE = 8

log = logging.getLogger("exporter")


def build_parser() -> argparse.ArgumentParser:
    """Every flag, in one place. Defaults that depend on other flags are None here and
    resolved in main(), so that a flag given without the mode it belongs to can be told
    from one left alone."""
    parser = argparse.ArgumentParser(
        prog="reachability-exporter",
        description="Probe internet services on an interval, classify every failure into a "
        "verdict, and expose the results to Prometheus.",
        # The Go exporters take no abbreviations: `--config.f` must not silently mean
        # --config.file, nor a flag added later change what an old abbreviation meant.
        allow_abbrev=False,
    )
    add = parser.add_argument
    add(
        "--config.file",
        dest="config_file",
        metavar="FILE",
        help=f"configuration file (default: {DEFAULT_CONFIG} in the working directory, "
        f"else {INSTALLED_CONFIG})",
    )
    add(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the configuration, print every problem, and exit 0 or 2",
    )
    add(
        "--web.listen-address",
        dest="listen",
        action="append",
        metavar="ADDR",
        help=f"address to listen on, [host]:port; may be repeated (default: {DEFAULT_LISTEN}, "
        "every address)",
    )
    add(
        "--web.config.file",
        dest="web_config",
        metavar="FILE",
        help="exporter-toolkit web configuration: TLS and basic auth for every endpoint "
        "(default: none, plain HTTP without authentication)",
    )
    add(
        "--log.level",
        dest="log_level",
        choices=list(logs.LEVELS),
        default="info",
        help="only log messages of this level or above: %(choices)s (default: %(default)s)",
    )
    add(
        "--log.format",
        dest="log_format",
        choices=["logfmt", "json"],
        default="logfmt",
        help="log line format: %(choices)s (default: %(default)s)",
    )
    add(
        "--web.telemetry-path",
        dest="telemetry_path",
        default=DEFAULT_TELEMETRY_PATH,
        metavar="PATH",
        help="path under which to expose the metrics (default: %(default)s)",
    )
    add(
        "--web.max-connections",
        dest="max_connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="most web connections open at once; more wait in the listen backlog, and one "
        "that has not sent a request yet is closed to make room (default: %(default)s)",
    )
    add(
        "--probe.concurrency",
        dest="concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help="most probes running at once, also with --once (default: %(default)s)",
    )
    add(
        "--once",
        action="store_true",
        help="run every check once, print the vantage state and the verdicts, and exit: "
        "0 when every selected check is ok, 1 when any is not, 2 on a usage or "
        "configuration error",
    )
    add(
        "--storage.path",
        dest="storage_path",
        default=journal.DEFAULT_PATH,
        metavar="DIR",
        help='the evidence journal and restored state; "" keeps nothing (default: %(default)s)',
    )
    add(
        "--storage.retention.size",
        dest="retention",
        default="64MiB",
        metavar="SIZE",
        help="the journal's bound on disk; the oldest records go first (default: %(default)s)",
    )
    add(
        "--service",
        dest="services",
        action="append",
        metavar="NAME",
        help="with --once: only this service; may be repeated (default: every service)",
    )
    add(
        "--output",
        choices=["table", "json"],
        help="with --once: output format, %(choices)s (default: table)",
    )
    add("--version", action="version", version=f"reachability-exporter {__version__}")
    return parser  # fmt: skip


def usage_problems(args: argparse.Namespace) -> list[str]:
    """Flags that are each valid but make no sense together, or values argparse cannot
    judge; each one a usage error (exit 2) rather than a flag silently ignored."""
    problems = []
    if not args.once:
        for flag, value in (("--service", args.services), ("--output", args.output)):
            if value is not None:
                problems.append(f"{flag} only makes sense with --once")
    if args.once and args.config_check:
        problems.append("--once and --config.check exclude each other: choose one")
    if args.concurrency < 1:
        problems.append("--probe.concurrency must be at least 1")
    if args.max_connections < 1:
        problems.append("--web.max-connections must be at least 1")
    if not args.telemetry_path.startswith("/") or args.telemetry_path in _RESERVED_PATHS:
        reserved = ", ".join(sorted(_RESERVED_PATHS))
        problems.append(f"--web.telemetry-path must start with / and not be one of {reserved}")
    for address in args.listen or []:
        try:
            parse_listen_address(address)
        except ValueError as exc:
            problems.append(f"--web.listen-address: {exc}")
    try:
        units.parse_size(args.retention)
    except units.UnitError as exc:
        problems.append(f"--storage.retention.size: {exc}")
    return problems


def locate_config(given: str | None, installed: str = INSTALLED_CONFIG) -> str:
    """The configuration file to read: `given` as it is; else config.yaml in the working
    directory, else the installed one. Raises ConfigError naming every place it looked."""
    if given is not None:
        return given
    for candidate in (DEFAULT_CONFIG, installed):
        if os.path.exists(candidate):
            return candidate
    message = (
        f"cannot read configuration: not in the working directory "
        f"({os.path.abspath(DEFAULT_CONFIG)}) nor at {installed}; give --config.file=FILE"
    )
    raise ConfigError(DEFAULT_CONFIG, [Problem(0, "", message)])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    problems = usage_problems(args)
    if problems:
        parser.print_usage(sys.stderr)
        for problem in problems:
            print(f"{parser.prog}: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    logs.setup(args.log_level, args.log_format)
    try:
        args.config_file = locate_config(args.config_file)
        # A serving exporter keeps running for months: it loads in a child, so that the
        # parse's garbage never fragments its memory (exporter/config/childload.py).
        serving = not (args.config_check or args.once)
        load = load_file_in_child if serving else config_module.load_file
        config = load(args.config_file)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return EXIT_USAGE
    if args.config_check:
        checks = sum(1 for _ in config.checks())
        print(f"{args.config_file}: OK ({len(config.services)} services, {checks} checks)")
        if args.web_config:
            try:
                load_web_config(args.web_config)
            except WebConfigError as exc:
                print(exc, file=sys.stderr)
                return EXIT_USAGE
            print(f"{args.web_config}: OK")
        return EXIT_OK
    if args.once:
        return _run_once(config, args)
    return _serve(config, args)


def _run_once(config: Config, args: argparse.Namespace) -> int:
    services = args.services or []
    unknown = [name for name in services if name not in config.services]
    if unknown:
        for name in unknown:
            print(f"{args.config_file}: unknown service {name!r}", file=sys.stderr)
        return EXIT_USAGE
    report = asyncio.run(once.run(config, services, concurrency=args.concurrency))
    (once.print_json if args.output == "json" else once.print_table)(report)
    # Exit codes are 0/1/2 everywhere (README), so an offline vantage is 1 like any failure;
    # the summary line (and "vantage" in JSON) says why.
    return EXIT_OK if report.ok else EXIT_FAILURE


def _serve(config: Config, args: argparse.Namespace) -> int:
    listen = args.listen or [DEFAULT_LISTEN]
    try:
        web_config = web_config_source(args.web_config)
    except (ValueError, WebConfigError) as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    try:
        store = journal.open_journal(args.storage_path, units.parse_size(args.retention))
    except journal.JournalError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_serve_async(config, args, listen, web_config, store))
    return EXIT_OK


async def _serve_async(
    config: Config,
    args: argparse.Namespace,
    listen: list[str],
    web_config: Callable[[], WebConfig],
    store: journal.Journal,
) -> int:
    exporter = Exporter(args.config_file, concurrency=args.concurrency, journal=store)
    connections = fdlimit.web_connections(args.max_connections, args.concurrency, len(listen))
    try:
        web = WebServer(
            exporter,
            listen,
            web_config,  # called per connection and request: a re-read applies at once
            max_connections=connections,
            telemetry_path=args.telemetry_path,
            probe_runs=max(1, args.concurrency // PROBE_SHARE),
        )
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        store.close()
        return EXIT_FAILURE
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[tuple[bool, str]]] = set()

    def reload_on_signal() -> None:
        task = loop.create_task(exporter.reload())
        reloads.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(reloads.discard)
        if isinstance(web_config, WebConfigWatcher):
            # Off the loop: it reads files and may hash (a dummy bcrypt at a new cost).
            loop.run_in_executor(None, web_config.reload)

    loop.add_signal_handler(signal.SIGHUP, reload_on_signal)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await exporter.start(config)
    await web.start()
    log.info("reachability-exporter %s ready addresses=%s", __version__, ",".join(listen))
    await stopping.wait()
    log.info("shutting down")
    await web.stop()
    await exporter.stop()
    return EXIT_OK
