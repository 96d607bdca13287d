"""The scheduler against real peers: first runs spread over the interval, a hung target never
delays other checks, reloads keep unchanged checks' schedules, stop cancels everything."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from exporter.config import load_text
from exporter.metrics import ResultStore
from exporter.scheduler import Scheduler


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """Accepts TCP connections and never says a word: a TLS handshake to it hangs."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()


async def test_first_runs_are_spread_across_the_interval(listener: int) -> None:
    checks = "\n".join(
        f'      - {{name: c{i}, kind: tcp, target: "127.0.0.1:{listener}"}}' for i in range(10)
    )
    config = load_text(
        f"defaults: {{interval: 2s, timeout: 1s}}\nservices:\n  s:\n    checks:\n{checks}\n"
    )
    store = ResultStore()
    scheduler = Scheduler(store)
    await scheduler.apply(config)
    await asyncio.sleep(2.1)
    await scheduler.stop()
    starts = sorted(s.result.started for s in store.snapshot().states.values() if s.result)
    assert len(starts) == 10
    assert starts[-1] - starts[0] > 1.5  # not a burst at t=0
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) > 0.1


async def test_a_hung_target_never_delays_other_checks(listener: int, silent_server: int) -> None:
    hung = "\n".join(
        f'      - {{name: hung{i}, kind: tls, target: "127.0.0.1:{silent_server}", '
        f"timeout: 1500ms, interval: 2s}}"
        for i in range(8)
    )
    config = load_text(
        "bogons: []\nservices:\n  s:\n    checks:\n"
        f'      - {{name: fast, kind: tcp, target: "127.0.0.1:{listener}", '
        "timeout: 200ms, interval: 250ms}\n" + hung + "\n"
    )
    store = ResultStore()
    scheduler = Scheduler(store)
    await scheduler.apply(config)
    await asyncio.sleep(3.1)
    snapshot = store.snapshot()
    await scheduler.stop()
    fast = snapshot.states[("s", "fast")]
    assert fast.runs >= 11  # every 250 ms for 3 s, hung neighbours or not
    hung_verdicts = {str(snapshot.states[("s", f"hung{i}")].verdict) for i in range(8)}
    assert hung_verdicts <= {"tls_timeout", "None"}
    assert snapshot.lag.counts[-1] == 0  # no start was late by more than 30 s
    late = sum(snapshot.lag.counts[snapshot.lag.buckets.index(0.1) + 1 :])
    assert late == 0, "some check started more than 100 ms late"


async def test_reload_keeps_unchanged_checks_and_restarts_changed_ones(listener: int) -> None:
    base = (
        "defaults: {interval: 1s, timeout: 500ms}\nservices:\n  s:\n    checks:\n"
        f'      - {{name: kept, kind: tcp, target: "127.0.0.1:{listener}"}}\n'
    )
    store = ResultStore()
    scheduler = Scheduler(store)
    await scheduler.apply(
        load_text(base + f'      - {{name: gone, kind: tcp, target: "127.0.0.1:{listener}"}}\n')
    )
    await asyncio.sleep(1.2)
    kept_task = scheduler._tasks[("s", "kept")][1]
    await scheduler.apply(
        load_text(base + f'      - {{name: new, kind: tcp, target: "127.0.0.1:{listener}"}}\n')
    )
    assert scheduler._tasks[("s", "kept")][1] is kept_task
    assert ("s", "gone") not in scheduler._tasks
    await asyncio.sleep(1.1)
    snapshot = store.snapshot()
    await scheduler.stop()
    assert set(snapshot.states) == {("s", "kept"), ("s", "new")}
    assert snapshot.states[("s", "kept")].runs >= 2
    assert snapshot.states[("s", "new")].runs >= 1
    assert kept_task.done()


async def test_a_cancelled_reload_is_not_swallowed(listener: int) -> None:
    """Stopping the checks a reload removes must not eat the reload's own cancellation."""
    base = (
        "defaults: {interval: 1s, timeout: 500ms}\nservices:\n  s:\n    checks:\n"
        f'      - {{name: a, kind: tcp, target: "127.0.0.1:{listener}"}}\n'
    )
    scheduler = Scheduler(ResultStore())
    await scheduler.apply(load_text(base))
    reload = asyncio.create_task(scheduler.apply(load_text(base.replace("name: a", "name: b"))))
    await asyncio.sleep(0)  # the reload is now waiting for the removed check to stop
    reload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reload
    assert reload.cancelled()
    await scheduler.stop()
