"""The running exporter: owns the configuration file, the result store, the scheduler and
the registry, and knows how to reload. The CLI starts it; the web server calls into it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from exporter.changes import VerdictChanges
from exporter.config import Check, Config
from exporter.config.childload import load_file_in_child
from exporter.errors import ConfigError
from exporter.journal import Journal, MemoryJournal
from exporter.metrics import ReachabilityCollector, ResultStore
from exporter.result import Result
from exporter.scheduler import DEFAULT_CONCURRENCY, Scheduler

log = logging.getLogger(__name__)

# Longer than safefile.READ_TIMEOUT plus the parse of the largest file it accepts.
RELOAD_READ_TIMEOUT = 30.0


class Exporter:
    def __init__(
        self,
        config_file: str,
        *,
        registry: CollectorRegistry | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        journal: Journal | None = None,
    ) -> None:
        self.config_file = config_file
        self.store = ResultStore()
        self.journal = journal if journal is not None else MemoryJournal()
        self.changes = VerdictChanges(self.store, self.journal)
        self.store.observer = self.changes.on_change
        self.scheduler = Scheduler(self.store, concurrency)
        self.registry = registry if registry is not None else CollectorRegistry()
        self.registry.register(ReachabilityCollector(self.store))
        self.registry.register(ProcessCollector(registry=None))
        self.loop: asyncio.AbstractEventLoop | None = None
        self._reload_lock = asyncio.Lock()

    @property
    def config(self) -> Config | None:
        return self.scheduler.config

    async def start(self, config: Config) -> None:
        self.loop = asyncio.get_running_loop()
        # Before the first run, so that a verdict that did not change keeps its "since".
        await asyncio.to_thread(self.changes.restore)
        self.changes.apply_config(config)
        await self.scheduler.apply(config)
        self.store.set_ready()
        log.info(
            "started config=%s services=%d checks=%d",
            self.config_file,
            len(config.services),
            sum(1 for _ in config.checks()),
        )

    async def reload(self) -> tuple[bool, str]:
        """Re-read the configuration file; a bad file keeps the running configuration."""
        async with self._reload_lock:
            try:
                # Bounded, so that a file that cannot be read in time (a hung network
                # filesystem) fails this reload and releases the lock for the next one; the
                # reader bounds itself too, this is the backstop.
                config = await asyncio.wait_for(
                    asyncio.to_thread(load_file_in_child, self.config_file),
                    RELOAD_READ_TIMEOUT,
                )
            except ConfigError as exc:
                self.store.set_reload_failed()
                for line in exc.lines():
                    log.error("reload failed, keeping the running configuration: %s", line)
                return False, str(exc)
            except TimeoutError:
                self.store.set_reload_failed()
                message = f"{self.config_file}: cannot read configuration in time"
                log.error("reload failed, keeping the running configuration: %s", message)
                return False, message
            except Exception as exc:
                # A bug of ours must not leave the reload metric reading 1.
                self.store.set_reload_failed()
                log.exception("reload failed, keeping the running configuration")
                return False, f"{self.config_file}: reload failed: {type(exc).__name__}"
            self.changes.apply_config(config)
            await self.scheduler.apply(config)
            log.info("configuration reloaded file=%s", self.config_file)
            return True, "configuration reloaded"

    def find_checks(self, service: str, check: str | None) -> list[Check] | None:
        """The configured checks named by /probe, or None when the name is unknown: the
        endpoint must never probe anything the configuration does not list."""
        config = self.config
        if config is None or service not in config.services:
            return None
        checks = list(config.services[service].checks)
        if check is not None:
            checks = [c for c in checks if c.name == check]
        return checks or None

    async def run_now(self, checks: Iterable[Check]) -> list[Result]:
        return await self.scheduler.run_now(list(checks))

    async def stop(self) -> None:
        await self.scheduler.stop()
        await asyncio.to_thread(self.journal.close)
