"""Command line of CONTRACT.md: flags in the Go exporters' dotted style, logging set-up, and
the three ways to run (serve, --config.check, --once). Exit codes: 0 success, 1 failure,
2 usage or configuration error."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from exporter import __version__, logs, once
from exporter import config as config_module
from exporter.app import Exporter
from exporter.config import Config
from exporter.errors import ConfigError
from exporter.scheduler import DEFAULT_CONCURRENCY
from exporter.web import WebServer, parse_listen_address
from exporter.webconfig import WebConfig, WebConfigError
from exporter.webconfig import load as load_web_config

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DEFAULT_LISTEN = ":9869"

log = logging.getLogger("exporter")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reachability-exporter",
        description="Probe internet services on an interval, classify every failure into a "
        "verdict, and expose the results to Prometheus.",
    )
    add = parser.add_argument
    add(
        "--config.file",
        dest="config_file",
        default="config.yaml",
        metavar="FILE",
        help="configuration file (default: %(default)s)",
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
        help=f"address to listen on; may be repeated (default: {DEFAULT_LISTEN})",
    )
    add(
        "--web.config.file",
        dest="web_config",
        metavar="FILE",
        help="exporter-toolkit web configuration: TLS and basic auth for every endpoint",
    )
    add("--log.level", dest="log_level", choices=list(logs.LEVELS), default="info")
    add("--log.format", dest="log_format", choices=["logfmt", "json"], default="logfmt")
    add(
        "--probe.concurrency",
        dest="concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help="most probes running at once (default: %(default)s)",
    )
    add("--once", action="store_true", help="run every check once, print, and exit")
    add(
        "--service",
        dest="services",
        action="append",
        default=[],
        metavar="NAME",
        help="with --once: only this service; may be repeated",
    )
    add(
        "--output",
        choices=["table", "json"],
        default="table",
        help="with --once: output format (default: %(default)s)",
    )
    add("--version", action="version", version=f"reachability-exporter {__version__}")
    return parser  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log_level, args.log_format)
    if args.concurrency < 1:
        print("--probe.concurrency must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = config_module.load_file(args.config_file)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return EXIT_USAGE
    if args.config_check:
        checks = sum(1 for _ in config.checks())
        print(f"{args.config_file}: OK ({len(config.services)} services, {checks} checks)")
        return EXIT_OK
    if args.once:
        return _run_once(config, args)
    return _serve(config, args)


def _run_once(config: Config, args: argparse.Namespace) -> int:
    unknown = [name for name in args.services if name not in config.services]
    if unknown:
        for name in unknown:
            print(f"{args.config_file}: unknown service {name!r}", file=sys.stderr)
        return EXIT_USAGE
    rows = asyncio.run(once.run(config, args.services))
    (once.print_json if args.output == "json" else once.print_table)(rows)
    return EXIT_OK if all(result.ok for _, result in rows) else EXIT_FAILURE


def _serve(config: Config, args: argparse.Namespace) -> int:
    listen = args.listen or [DEFAULT_LISTEN]
    try:
        for address in listen:
            parse_listen_address(address)
        web_config = load_web_config(args.web_config) if args.web_config else WebConfig()
    except (ValueError, WebConfigError) as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_serve_async(config, args, listen, web_config))
    return EXIT_OK


async def _serve_async(
    config: Config, args: argparse.Namespace, listen: list[str], web_config: WebConfig
) -> int:
    exporter = Exporter(args.config_file, concurrency=args.concurrency)
    try:
        web = WebServer(exporter, listen, web_config)
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        return EXIT_FAILURE
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[tuple[bool, str]]] = set()

    def reload_on_signal() -> None:
        task = loop.create_task(exporter.reload())
        reloads.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload_on_signal)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await exporter.start(config)
    web.start()
    log.info("reachability-exporter %s ready addresses=%s", __version__, ",".join(listen))
    await stopping.wait()
    log.info("shutting down")
    web.stop()
    await exporter.stop()
    return EXIT_OK
