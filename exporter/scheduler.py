"""Runs every check on its own interval, as smokeping_prober does: first runs spread across
the interval, one loop per check (so never two runs of one check at once), a bound on how
many probes run together, and reloads that keep unchanged checks on their schedule."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
from collections.abc import Coroutine
from typing import Any

from exporter.config import Check, Config
from exporter.metrics import ResultStore
from exporter.probeenv import ProbeEnv
from exporter.probes import run_check
from exporter.result import Result

DEFAULT_CONCURRENCY = 64
# Every closed asyncio connection is a reference cycle in CPython 3.11 (a transport holds a
# bound method of itself), and a TLS one drags a 256 KiB read buffer with it. Probes live long
# enough for that garbage to reach the oldest generation, which the collector seldom visits:
# with 1,000 checks it grew by ~110 MiB; collecting every 2 s holds it near 30 MiB, for no
# CPU cost measurable in benchmarks/bench_scale.py.
COLLECT_EVERY = 2.0
# Old HTTP clients are closed this long after a reload, once probes started before it ended.
ENV_RETIRE_GRACE = 5.0

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, store: ResultStore, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self.store = store
        self.env: ProbeEnv | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: dict[tuple[str, str], tuple[Check, asyncio.Task[None]]] = {}
        self._background: set[asyncio.Task[None]] = set()

    @property
    def config(self) -> Config | None:
        return self.env.config if self.env else None

    async def apply(self, config: Config) -> None:
        """Start using `config`: new checks start, removed ones stop, changed ones restart,
        unchanged ones keep their schedule. The store keeps the state of kept checks."""
        if self.env is None:
            self._spawn(self._collect_garbage())
        old_env, self.env = self.env, ProbeEnv(config)
        self.store.apply_config(config)
        wanted = {check.key: check for check in config.checks()}
        stopped = []
        for key, (check, task) in list(self._tasks.items()):
            if wanted.get(key) != check:
                task.cancel()
                stopped.append(task)
                del self._tasks[key]
        if stopped:
            # asyncio.wait, not `await task` under suppress(CancelledError): that would also
            # swallow a cancellation of this reload itself.
            await asyncio.wait(stopped)
        loop = asyncio.get_running_loop()
        now = loop.time()
        total = max(len(wanted), 1)
        for index, (key, check) in enumerate(wanted.items()):
            if key in self._tasks:
                continue
            # Spread first runs over the interval (smokeping_prober: interval / targets).
            first = now + check.interval * index / total
            task = asyncio.create_task(self._run_forever(check, first), name=f"check {key}")
            self._tasks[key] = (check, task)
        if old_env is not None:
            self._spawn(self._retire(old_env))

    async def _run_forever(self, check: Check, next_at: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            async with self._slots:
                self.store.observe_lag(loop.time() - next_at)
                result = await self.run_once(check)
            self.store.record(check, result)
            log.debug(
                "check ran service=%s check=%s verdict=%s duration=%.3f",
                check.service,
                check.name,
                result.verdict,
                result.duration,
            )
            next_at += check.interval
            late = loop.time() - next_at
            if late >= check.interval:
                # Missed whole slots (a loaded machine): skip them rather than burst. A slot
                # that is merely late runs at once, and the lag histogram says so.
                next_at += math.floor(late / check.interval) * check.interval

    async def run_once(self, check: Check) -> Result:
        assert self.env is not None
        return await run_check(check, self.env)

    async def run_now(self, checks: list[Check]) -> list[Result]:
        """Ad-hoc runs (/probe): concurrent, within the same concurrency bound."""

        async def bounded(check: Check) -> Result:
            async with self._slots:
                return await self.run_once(check)

        return list(await asyncio.gather(*(bounded(c) for c in checks)))

    async def stop(self) -> None:
        tasks = [task for _, task in self._tasks.values()] + list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self.env is not None:
            await self.env.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _collect_garbage(self) -> None:
        # What exists once the first configuration is loaded lives for good: freezing it keeps
        # each full collection down to the probes' own garbage.
        gc.freeze()
        while True:
            await asyncio.sleep(COLLECT_EVERY)
            gc.collect()

    async def _retire(self, env: ProbeEnv) -> None:
        timeouts = [check.timeout for check in env.config.checks()]
        await asyncio.sleep(max(timeouts, default=0.0) + ENV_RETIRE_GRACE)
        await env.aclose()
