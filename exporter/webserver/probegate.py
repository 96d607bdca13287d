"""/probe's bounds: at most one ad-hoc run of a check at a time (a second caller waits for
the running one's result), at most `max_runs` ad-hoc runs at once (past it, callers are
turned away at once), and each run is the check's own run, with its own limits (a transfer
reads at most its min_bytes), exactly as on schedule."""

from __future__ import annotations

import asyncio
import contextlib

from exporter.app import Exporter
from exporter.config import Check
from exporter.result import Result


class ProbeBusy(Exception):
    """Starting the requested runs would exceed the cap on concurrent ad-hoc runs."""


class _Run:
    def __init__(self, task: asyncio.Task[Result]) -> None:
        self.task = task
        self.waiters = 0


class ProbeGate:
    def __init__(self, exporter: Exporter, max_runs: int) -> None:
        self._exporter = exporter
        self.max_runs = max(1, max_runs)
        self._runs: dict[tuple[str, str], _Run] = {}

    @property
    def running(self) -> int:
        return len(self._runs)

    async def run(self, checks: list[Check]) -> list[Result]:
        """The results of one run of each check, joining runs already under way. Raises
        ProbeBusy when new runs would exceed the cap. A caller that gives up (a timeout
        around this call) cancels the runs no other caller waits for."""
        new = [c for c in checks if c.key not in self._runs]
        if len(self._runs) + len(new) > self.max_runs:
            raise ProbeBusy(f"{len(self._runs)} probes are running, at most {self.max_runs}")
        runs = [self._join(check) for check in checks]
        try:
            # shield: one caller leaving must not cancel a run that others share.
            return [await asyncio.shield(run.task) for run in runs]
        finally:
            for run in runs:
                run.waiters -= 1
                if run.waiters == 0 and not run.task.done():
                    # Nobody is waiting for it any more: free its probe slot.
                    run.task.cancel()

    def _join(self, check: Check) -> _Run:
        run = self._runs.get(check.key)
        if run is None or run.task.done():
            task = asyncio.create_task(self._run_one(check), name=f"probe {check.key}")
            run = _Run(task)
            self._runs[check.key] = run
            task.add_done_callback(lambda _: self._forget(check.key, run))
        run.waiters += 1
        return run

    async def _run_one(self, check: Check) -> Result:
        (result,) = await self._exporter.run_now([check])
        return result

    def _forget(self, key: tuple[str, str], run: _Run) -> None:
        if self._runs.get(key) is run:
            del self._runs[key]
        if not run.task.cancelled():
            with contextlib.suppress(Exception):
                run.task.exception()  # retrieved: a failed run is the caller's to report
