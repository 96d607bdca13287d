"""The exporter watching its own event loop: a timer that should fire every TICK seconds,
and how late it fires. Lateness is time the loop spent blocked (a long computation, the GIL
held by another thread, a paused VM) instead of serving probes; a probe that timed out
during such a stall measured the exporter, not the target."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

TICK = 0.1


class LoopWatch:
    """Counts the seconds the loop was blocked since it started, so a run can ask how much
    of its own time the exporter stalled (`stalled_since(mark)`)."""

    def __init__(self, observe: Callable[[float], None] | None = None) -> None:
        self._observe = observe
        self._stalled = 0.0  # total lateness of every tick so far
        self._due = 0.0  # loop time the next tick is expected at
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="loop watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None

    def mark(self) -> float:
        return self.stalled()

    def stalled_since(self, mark: float) -> float:
        return self.stalled() - mark

    def stalled(self) -> float:
        """Stalled seconds so far, including a stall in progress whose tick has not run yet
        (the loop may resume a probe before it resumes this watch)."""
        if self._task is None:
            return self._stalled
        overdue = asyncio.get_running_loop().time() - self._due
        return self._stalled + max(overdue, 0.0)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._due = loop.time() + TICK
            await asyncio.sleep(TICK)
            late = max(loop.time() - self._due, 0.0)
            self._stalled += late
            self._due = loop.time() + TICK  # so stalled() does not count this lateness twice
            if self._observe is not None:
                self._observe(late)
