"""Runs every check on its own interval, as smokeping_prober does: first runs spread across
the interval, never two runs of one check at once, reloads that keep unchanged checks on
their schedule.

A waiting check is one asyncio timer (`loop.call_at`), not a sleeping task: at 10,000 checks a
task per check cost ~20 MB. The timer calls the entry itself, in one context that every timer
shares, so a waiting check is one object that the garbage collector walks (its TimerHandle),
not four: a bound method and an argument tuple per call_at, and the copy of the context that
asyncio makes for a timer given none.

A run holds a start slot only while it starts (at most START_SLICE), not while it waits for
a blackholed target: a slot held for a whole 10 s timeout let 2,000 blackholed checks starve
a healthy 5 s check to 3 runs in 194 s. Slots bound bursts of CPU-heavy starts (handshakes)
and of new connections; IN_FLIGHT_PER_SLOT bounds the runs open at once, and with them the
file descriptors the probes need."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import math
import random
from collections.abc import Callable, Coroutine
from typing import Any

from exporter.classify import exporter_failure
from exporter.config import Check, Config
from exporter.loopwatch import LoopWatch
from exporter.metrics import ResultStore
from exporter.probeenv import ProbeEnv
from exporter.probes import run_check
from exporter.result import Result

DEFAULT_CONCURRENCY = 64
# A probe that has not finished this long after its start is waiting on the network (a
# loopback TLS handshake takes ~3 ms of CPU): it gives its start slot back and keeps only its
# socket and its timer.
START_SLICE = 0.25
# Runs open at once per start slot (1,024 at the default concurrency): each holds one to a
# few sockets; past this, new runs wait rather than exhaust the file descriptors.
IN_FLIGHT_PER_SLOT = 16
# A failed run during which the event loop itself was blocked for this share of the check's
# timeout measured the exporter, not the target: it is run again once, and if the exporter
# stalls again it is published as `error` (README: "The exporter under load").
STALL_SHARE = 0.25
# Every closed asyncio connection is a reference cycle in CPython 3.11 (a transport holds a
# bound method of itself). Probes live long enough for that garbage to reach the oldest
# generation, which the collector seldom visits on its own, so the scheduler collects it
# every COLLECT_EVERY, with what exists after start frozen out of the collector's view.
# A full collection walks every object made since start: at 10,000 checks it holds the loop
# 15-35 ms (~33,000 objects, once a waiting check became one: see the module's doc; it was
# 50-110 ms), and every 2 s it cost a tenth of the exporter's CPU (2.41 against 2.17 ms per
# run) and made scrapes that overlapped one miss 100 ms. The garbage is small now that the
# probes' connections hold no asyncio TLS read buffer (256 KiB each, when 2 s was chosen):
# at 10,000 checks, peak RSS 88.2 MiB collecting every 30 s against 87.5 every 2 s
# (benchmarks/bench_scale.py, installed process). The interval is jittered so that it cannot
# lock onto a scraper's period and stall the same scrape every time.
COLLECT_EVERY = 30.0
COLLECT_JITTER = 0.2
# Old HTTP clients are closed this long after a reload, once probes started before it ended.
ENV_RETIRE_GRACE = 5.0

log = logging.getLogger(__name__)


class _Entry:
    """One scheduled check: its next start and what is pending for it (a timer while it
    waits, a task while it runs; never both). Calling it starts its run."""

    __slots__ = ("check", "next_at", "start", "stopped", "task", "timer")

    def __init__(self, check: Check, next_at: float, start: Callable[[_Entry], None]) -> None:
        self.check = check
        self.next_at = next_at
        self.start = start
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.stopped = False

    def __call__(self) -> None:
        self.start(self)


class _StartSlot:
    """A start slot, given back when the run ends or START_SLICE after it began."""

    __slots__ = ("_held", "_semaphore", "_timer")

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore = semaphore
        self._held = True
        self._timer = asyncio.get_running_loop().call_later(START_SLICE, self.release)

    def release(self) -> None:
        if self._held:
            self._held = False
            self._timer.cancel()
            self._semaphore.release()


class Scheduler:
    def __init__(self, store: ResultStore, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self.store = store
        self.env: ProbeEnv | None = None
        self.max_in_flight = concurrency * IN_FLIGHT_PER_SLOT
        self._start_slots = asyncio.Semaphore(concurrency)
        self._in_flight = asyncio.Semaphore(self.max_in_flight)
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.watch = LoopWatch(store.observe_stall)
        # One bound method for every entry, and the context of every timer (module doc).
        self._start_entry = self._start
        self._timer_context = contextvars.copy_context()

    def _wait(self, entry: _Entry, loop: asyncio.AbstractEventLoop) -> None:
        entry.timer = loop.call_at(entry.next_at, entry, context=self._timer_context)

    @property
    def config(self) -> Config | None:
        return self.env.config if self.env else None

    async def apply(self, config: Config) -> None:
        """Start using `config`: new checks start, removed ones stop, changed ones restart,
        unchanged ones keep their schedule. The store keeps the state of kept checks."""
        first = self.env is None
        if first:
            self.watch.start()
        old_env, self.env = self.env, ProbeEnv(config)
        self.store.apply_config(config)
        wanted = {check.key: check for check in config.checks()}
        stopped = []
        for key, entry in list(self._entries.items()):
            if wanted.get(key) != entry.check:
                task = self._stop_entry(entry)
                if task is not None:
                    stopped.append(task)
                del self._entries[key]
        if stopped:
            # asyncio.wait, not `await task` under suppress(CancelledError): that would also
            # swallow a cancellation of this reload itself.
            await asyncio.wait(stopped)
        loop = asyncio.get_running_loop()
        now = loop.time()
        total = max(len(wanted), 1)
        for index, (key, check) in enumerate(wanted.items()):
            if key in self._entries:
                continue
            # Spread first runs over the interval (smokeping_prober: interval / targets).
            entry = _Entry(check, now + check.interval * index / total, self._start_entry)
            self._wait(entry, loop)
            self._entries[key] = entry
        if first:
            self._spawn(self._collect_garbage())
        if old_env is not None:
            self._spawn(self._retire(old_env))

    def _stop_entry(self, entry: _Entry) -> asyncio.Task[None] | None:
        entry.stopped = True
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        if entry.task is not None:
            entry.task.cancel()
        return entry.task

    def _start(self, entry: _Entry) -> None:
        entry.timer = None
        if not entry.stopped:
            entry.task = asyncio.get_running_loop().create_task(self._run(entry))

    async def _run(self, entry: _Entry) -> None:
        check = entry.check
        try:
            result = await self._bounded(check, scheduled=entry.next_at)
        finally:
            entry.task = None
        self.store.record(check, result)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "check ran service=%s check=%s verdict=%s duration=%.3f",
                check.service,
                check.name,
                result.verdict,
                result.duration,
            )
        if entry.stopped:
            return
        loop = asyncio.get_running_loop()
        next_at = entry.next_at + check.interval
        late = loop.time() - next_at
        if late >= check.interval:
            # Missed whole slots (a loaded machine): skip them rather than burst. A slot
            # that is merely late runs at once, and the lag histogram says so.
            next_at += math.floor(late / check.interval) * check.interval
        entry.next_at = next_at
        self._wait(entry, loop)

    async def _bounded(self, check: Check, scheduled: float | None = None) -> Result:
        async with self._in_flight:
            await self._start_slots.acquire()
            slot = _StartSlot(self._start_slots)
            try:
                if scheduled is not None:
                    self.store.observe_lag(asyncio.get_running_loop().time() - scheduled)
                return await self.run_once(check)
            finally:
                slot.release()

    async def run_once(self, check: Check) -> Result:
        """One run, published only if it measured the target: a failure during which the
        exporter's own loop stalled for STALL_SHARE of the timeout is run again once, and
        reported as `error` if the exporter stalls through the second run too."""
        assert self.env is not None
        for attempt in (1, 2):
            mark = self.watch.mark()
            result = await run_check(check, self.env)
            stalled = self.watch.stalled_since(mark)
            if result.ok or stalled < STALL_SHARE * check.timeout:
                return result
            self.store.count_stalled_run()
            log.warning(
                "the exporter stalled during a run, not publishing its verdict "
                "service=%s check=%s verdict=%s stalled=%.2fs attempt=%d",
                check.service, check.name, result.verdict, stalled, attempt,
            )  # fmt: skip
        result.verdict = exporter_failure()
        result.detail = (
            f"the exporter's event loop stalled {stalled:.1f}s of the {check.timeout:g}s "
            "timeout in two runs in a row: no verdict about the target"
        )
        return result

    async def run_now(self, checks: list[Check]) -> list[Result]:
        """Ad-hoc runs (/probe): concurrent, within the same bounds as scheduled runs."""
        return list(await asyncio.gather(*(self._bounded(c) for c in checks)))

    async def stop(self) -> None:
        tasks = [task for e in self._entries.values() if (task := self._stop_entry(e))]
        tasks += list(self._background)
        for task in self._background:
            task.cancel()
        self._entries.clear()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.watch.stop()
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
            await asyncio.sleep(
                COLLECT_EVERY * random.uniform(1 - COLLECT_JITTER, 1 + COLLECT_JITTER)
            )
            gc.collect()

    async def _retire(self, env: ProbeEnv) -> None:
        timeouts = [check.timeout for check in env.config.checks()]
        await asyncio.sleep(max(timeouts, default=0.0) + ENV_RETIRE_GRACE)
        await env.aclose()
