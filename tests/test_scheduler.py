"""The scheduler against real peers: first runs spread over the interval, a hung target never
delays other checks (nor do many: they give their start slots back), a stall of the
exporter's own loop never becomes a target's verdict, reloads keep unchanged checks'
schedules, stop cancels everything."""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from collections.abc import AsyncIterator

import pytest

from exporter.config import load_text
from exporter.metrics import ResultStore
from exporter.scheduler import STALL_SHARE, Scheduler
from exporter.verdicts import Verdict
from peers.dnsserver import DnsServer, records, slow


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
    kept = scheduler._entries[("s", "kept")]
    await scheduler.apply(
        load_text(base + f'      - {{name: new, kind: tcp, target: "127.0.0.1:{listener}"}}\n')
    )
    assert scheduler._entries[("s", "kept")] is kept
    assert ("s", "gone") not in scheduler._entries
    await asyncio.sleep(1.1)
    snapshot = store.snapshot()
    await scheduler.stop()
    assert set(snapshot.states) == {("s", "kept"), ("s", "new")}
    assert snapshot.states[("s", "kept")].runs >= 2
    assert snapshot.states[("s", "new")].runs >= 1
    assert kept.stopped and kept.task is None and kept.timer is None


async def test_a_cancelled_reload_is_not_swallowed(silent_server: int) -> None:
    """Stopping the checks a reload removes must not eat the reload's own cancellation."""
    base = (
        "defaults: {interval: 3s, timeout: 2s}\nbogons: []\nservices:\n  s:\n    checks:\n"
        f'      - {{name: a, kind: tls, target: "127.0.0.1:{silent_server}"}}\n'
    )
    scheduler = Scheduler(ResultStore())
    await scheduler.apply(load_text(base))
    await asyncio.sleep(0.2)  # `a` is in its handshake with the silent server
    reload = asyncio.create_task(scheduler.apply(load_text(base.replace("name: a", "name: b"))))
    await asyncio.sleep(0)  # the reload is now waiting for the removed check to stop
    reload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reload
    assert reload.cancelled()
    await scheduler.stop()


async def test_many_blackholed_checks_do_not_starve_a_healthy_one(
    listener: int, silent_server: int
) -> None:
    """Scaled down from 2,000 blackholed 10 s checks at concurrency 64, where a healthy 5 s
    check ran 3 times in 194 s: 40 hung checks holding 2 s each against 8 slots."""
    hung = "\n".join(
        f'      - {{name: hung{i}, kind: tls, target: "127.0.0.1:{silent_server}", '
        f"timeout: 2s, interval: 2500ms}}"
        for i in range(40)
    )
    config = load_text(
        "bogons: []\nservices:\n  s:\n    checks:\n"
        f'      - {{name: healthy, kind: tcp, target: "127.0.0.1:{listener}", '
        "timeout: 400ms, interval: 500ms}\n" + hung + "\n"
    )
    store = ResultStore()
    scheduler = Scheduler(store, concurrency=8)
    await scheduler.apply(config)
    await asyncio.sleep(4.2)
    snapshot = store.snapshot()
    await scheduler.stop()
    healthy = snapshot.states[("s", "healthy")]
    assert healthy.runs >= 7, f"the healthy check ran {healthy.runs} of 9 times"
    assert healthy.verdict is Verdict.OK
    hung_runs = sum(snapshot.states[("s", f"hung{i}")].runs for i in range(40))
    assert hung_runs >= 30  # every hung check started by 2.2 s has its tls_timeout


async def test_a_stall_of_the_exporter_is_not_published_as_a_timeout() -> None:
    """The loop is blocked (a blocking call in a task) while a healthy dns check waits for
    its answer: the run is discarded and run again, not reported as dns_timeout."""
    with DnsServer({"slow.test": slow(0.2, records("192.0.2.1"))}, tls=False) as dns:
        config = load_text(
            f'resolvers: {{local: "{dns.udp_url}"}}\nbogons: []\nservices:\n  s:\n'
            "    checks:\n      - {name: d, kind: dns, target: slow.test, resolvers: [local], "
            "timeout: 1s, interval: 1h}\n"
        )
        store = ResultStore(process_metrics=False)
        scheduler = Scheduler(store)
        await scheduler.apply(config)
        check = next(config.checks())

        async def block_the_loop(times: int) -> None:
            for _ in range(times):
                await asyncio.sleep(0.05)
                time.sleep(1.3)  # noqa: ASYNC251 - the point: the exporter stalls, not the network

        blocker = asyncio.create_task(block_the_loop(1))
        (result,) = await scheduler.run_now([check])
        await blocker
        assert result.verdict is Verdict.OK, result.detail
        text = store.exposition().decode()
        reruns = [
            line
            for line in text.splitlines()
            if line.startswith("reachability_exporter_stalled_runs_total ")
        ]
        assert float(reruns[0].split()[1]) >= 1.0
        assert 'reachability_exporter_event_loop_stall_seconds_bucket{le="1.0"} ' in text
        stalled = [line for line in text.splitlines() if "stall_seconds_sum" in line]
        assert float(stalled[0].split()[1]) >= 1.3 * STALL_SHARE

        # Stalled through the second run as well: the exporter says it failed, `error`.
        blocker = asyncio.create_task(block_the_loop(2))
        (result,) = await scheduler.run_now([check])
        await blocker
        await scheduler.stop()
        assert result.verdict is Verdict.ERROR
        assert "stalled" in result.detail


async def test_a_waiting_check_is_two_objects_for_the_garbage_collector(listener: int) -> None:
    # A full collection runs on the event loop every 30 s and walks every tracked object made
    # since start: at 10,000 checks, each waiting check's bound method, argument tuple and
    # copied context were 30,000 of the 84,000 it walked. What is left is its entry and its
    # TimerHandle.
    checks = 400
    lines = "\n".join(
        f'      - {{name: c{i}, kind: tcp, target: "127.0.0.1:{listener}"}}' for i in range(checks)
    )
    config = load_text(
        f"defaults: {{interval: 1h, timeout: 1s}}\nservices:\n  s:\n    checks:\n{lines}\n"
    )
    store = ResultStore()
    store.apply_config(config)  # the checks' states, which the scheduler keeps as they are
    scheduler = Scheduler(store)
    gc.collect()
    before = len(gc.get_objects())
    await scheduler.apply(config)
    try:
        made = len(gc.get_objects()) - before
    finally:
        await scheduler.stop()
    assert made / checks < 2.5, f"{made} tracked objects for {checks} waiting checks"
