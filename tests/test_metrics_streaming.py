"""/metrics written in batches from the pieces the store keeps (README: "The exporter under
load"): the body a client reads is the store's exposition byte for byte, plain or gzipped,
and a scrape costs the exporter a batch in flight, not a copy of a body that is tens of
megabytes at 10,000 checks. Real servers and clients on loopback."""

from __future__ import annotations

import asyncio
import gc
import gzip
import socket
import time
import tracemalloc
import urllib.request
from collections.abc import Callable
from pathlib import Path

from exporter.app import Exporter
from exporter.config import Config, load_text
from exporter.exposition import NO_LINES, CheckLayout, CheckLines, Form, tail
from exporter.metrics import ResultStore
from exporter.result import ResolverAnswer, Result
from exporter.verdicts import Verdict
from exporter.webconfig import WebConfig
from exporter.webserver.connection import WRITE_BATCH
from exporter.webserver.exposition import GZIP_FEED
from exporter.webserver.reply import Pieces
from exporter.webserver.server import WebServer
from peers.exporterproc import ExporterProcess


def _config(checks: int, target: str, name_length: int = 8, interval: str = "60s") -> str:
    lines = [
        f'      - {{name: c{i}-{"x" * name_length}, kind: tcp, target: "{target}"}}'
        for i in range(checks)
    ]
    return (
        f"defaults: {{interval: {interval}, timeout: 300ms}}\nbogons: []\n"
        "services:\n  many:\n    checks:\n" + "\n".join(lines) + "\n"
    )


def _fetch(url: str, encoding: str) -> tuple[bytes, str | None]:
    request = urllib.request.Request(url, headers={"Accept-Encoding": encoding})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read(), response.headers.get("Content-Encoding")


def _only_process_lines(tail: bytes) -> bool:
    lines = [line for line in tail.decode().splitlines() if not line.startswith("#")]
    return bool(lines) and all(line.startswith("process_") for line in lines)


def test_batches_keep_order_and_size_and_pass_a_large_piece_on_uncopied() -> None:
    large = b"L" * 50
    pieces = [b"a" * 7, b"", b"b" * 7, large, b"c" * 3, b"d"]
    batches = list(Pieces.of(pieces).batches(10))
    assert b"".join(batches) == b"".join(pieces)
    assert [len(b) for b in batches] == [14, 50, 4]
    assert batches[1] is large
    assert list(Pieces.of([]).batches(10)) == []


def _layout() -> CheckLayout:
    return CheckLayout(
        [
            ("up", b"# up\n", Form.TAIL),
            ("text", b"# text\n", Form.TEXT),
            ("spliced", b"# spliced\n", Form.SPLICED),
        ]
    )


def _check_lines(count: int, text_of: Callable[[int], bytes]) -> tuple[CheckLines, bytes]:
    """`count` checks, every third without its one-line family, each with `text_of(i)` as
    its text chunk; the column the layout makes of them, and the text it must give."""
    layout = _layout()
    labels = [f'check="c{i}"'.encode() for i in range(count)]
    rendered = [
        (
            tail(float(i)) if i % 3 else b"",
            text_of(i),
            (b"a{", b"} 1\nb{", b"} 2\n"),
        )
        for i in range(count)
    ]
    length = sum(layout.length(chunks, own) for chunks, own in zip(rendered, labels, strict=True))
    expected = (
        b"# up\n"
        + b"".join(f'up{{check="c{i}"}} {float(i)}\n'.encode() for i in range(count) if i % 3)
        + b"# text\n"
        + b"".join(map(text_of, range(count)))
        + b"# spliced\n"
        + b"".join(f'a{{check="c{i}"}} 1\nb{{check="c{i}"}} 2\n'.encode() for i in range(count))
    )
    return layout.column(rendered, labels, length), expected


def test_check_lines_are_each_checks_chunks_family_by_family_of_the_length_they_kept() -> None:
    column, expected = _check_lines(500, lambda i: f"t{i}\n".encode())
    assert bytes(column) == expected
    # The length a scrape announces is the sum of what each check kept as it rendered.
    assert len(column) == len(expected)
    batches = Pieces.of([b"head\n", column, b"end\n"]).batches(1000)
    assert b"".join(batches) == b"head\n" + expected + b"end\n"


def test_check_lines_are_written_in_batches_near_the_batch_size_whatever_their_chunks() -> None:
    # Chunks of 9 bytes, and ten of 5,000 (checks with many lines) among them.
    large = b"L" * 5000
    column, expected = _check_lines(900, lambda i: large if 300 <= i < 310 else b"s" * 9)
    batches = list(Pieces.of([column]).batches(1000))
    assert b"".join(batches) == expected
    # A chunk over twice the size goes alone; batches of small chunks stay under twice it.
    assert all(len(b) <= 2000 or b == large for b in batches)
    assert sum(1 for b in batches if b == large) == 10
    # Few batches shorter than half the size: a family's header and end, at most.
    assert sum(1 for b in batches if len(b) < 500) <= 2 * 3


def test_a_check_that_has_not_run_takes_no_bytes_and_writes_nothing() -> None:
    layout = _layout()
    labels = [b"", b'c="1"']
    rendered = [(b"", b"", NO_LINES), (tail(1.0), b"x\n", (b"s{", b"} 1\n"))]
    assert layout.length(rendered[0], labels[0]) == 0
    length = sum(layout.length(chunks, own) for chunks, own in zip(rendered, labels, strict=True))
    column = layout.column(rendered, labels, length)
    assert bytes(column) == b'# up\nup{c="1"} 1.0\n# text\nx\n# spliced\ns{c="1"} 1\n'
    assert len(column) == len(bytes(column))


def test_a_streamed_scrape_is_the_joined_exposition_byte_for_byte(tmp_path: Path) -> None:
    # 700 checks: a body of several write batches and gzip slices.
    path = tmp_path / "config.yaml"
    path.write_text(_config(700, "127.0.0.1:9"))
    exporter = Exporter(str(path))
    config = load_text(path.read_text())
    exporter.store.apply_config(config)
    for index, check in enumerate(config.checks()):
        verdict = Verdict.OK if index % 3 else Verdict.TCP_REFUSED
        result = Result(verdict, duration=0.001 * index, phases={"resolve": 1e-5 * index})
        result.finished = 1.7e9 + index
        exporter.store.record(check, result)

    async def scrape() -> tuple[tuple[bytes, str | None], tuple[bytes, str | None]]:
        server = WebServer(exporter, ["127.0.0.1:0"], WebConfig)
        await server.start()
        try:
            url = f"http://127.0.0.1:{server.ports[0]}/metrics"
            plain = await asyncio.to_thread(_fetch, url, "identity")
            zipped = await asyncio.to_thread(_fetch, url, "gzip")
        finally:
            await server.stop()
        return plain, zipped

    (plain, plain_coding), (zipped, zipped_coding) = asyncio.run(scrape())
    expected = exporter.store.reachability_exposition()
    assert len(expected) > 4 * WRITE_BATCH and len(expected) > GZIP_FEED
    assert plain_coding is None and zipped_coding == "gzip"
    unzipped = gzip.decompress(zipped)
    for body in (plain, unzipped):
        # Then only process_* lines, whose CPU and memory figures change from scrape to scrape.
        assert body[: len(expected)] == expected
        assert _only_process_lines(body[len(expected) :])


def test_a_scrape_read_at_full_speed_gives_the_loop_back_between_batches() -> None:
    # A client that reads as fast as the kernel takes the bytes never makes drain() wait:
    # the whole body (40 MB here, as at 10,000 checks) would then be joined and written in
    # one turn of the loop (~50 ms), every probe waiting for it.
    store, _ = _recorded_store(_config(5000, "127.0.0.1:9", name_length=200), results=1)
    exporter = Exporter("unused.yaml")
    exporter.store = store
    length = Pieces.of(store.exposition_parts()).length
    assert length > 30_000_000

    def read_all(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            buffer = bytearray(1 << 20)
            while client.recv_into(buffer):
                pass

    async def scrape() -> float:
        server = WebServer(exporter, ["127.0.0.1:0"], WebConfig)
        await server.start()
        worst = 0.0
        reading = asyncio.ensure_future(asyncio.to_thread(read_all, server.ports[0]))
        try:
            while not reading.done():
                before = time.perf_counter()
                await asyncio.sleep(0)
                worst = max(worst, time.perf_counter() - before)
            await reading
        finally:
            await server.stop()
        return worst

    worst = asyncio.run(scrape())
    # It turns once batches have held it MAX_LOOP_HOLD (10 ms), plus the batch it is on.
    assert worst < 0.030, f"the loop waited {worst * 1000:.0f} ms for a turn during a scrape"


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_scrapes_their_clients_do_not_read_hold_a_batch_each_not_a_copy_of_the_body(
    tmp_path: Path, listener: int
) -> None:
    # Long check names make a body of ~4.5 MB from 40 checks that run every second.
    path = tmp_path / "config.yaml"
    path.write_text(_config(40, f"127.0.0.1:{listener}", name_length=3000, interval="1s"))
    process = ExporterProcess(path, log_level="warn").start()
    clients: list[socket.socket] = []
    try:
        _, body = process.wait_for(
            lambda: (got := process.get("/metrics")) and got[1].count("runs_total{") == 40 and got
        )
        size = len(body.encode())
        assert size > 4_000_000
        assert process.proc is not None
        before = _rss_mib(process.proc.pid)
        for _ in range(10):
            client = socket.socket()
            # A client that reads nothing: the kernel takes a little, the rest waits in us.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.connect(("127.0.0.1", process.port))
            client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(client)
        time.sleep(2.0)
        grown = _rss_mib(process.proc.pid) - before
        # A copy of the body per client would be 10 x 4.5 MB; a batch each is 10 x 256 KiB.
        assert grown < 15, f"RSS grew {grown:.0f} MiB with 10 unread scrapes of {size} bytes"
        assert process.get("/-/healthy")[0] == 200
    finally:
        for client in clients:
            client.close()
        process.stop()


# A check of each kind whose lines differ (a DNS resolver's, a transfer's, an HTTP status).
EVERY_KIND = """
bogons: []
services:
  web:
    checks:
      - {name: dns, kind: dns, target: example.org, resolvers: [system]}
      - {name: page, kind: http, target: "https://example.org/"}
      - {name: big, kind: transfer, target: "https://example.org/big"}
      - {name: tls, kind: tls, target: "example.org:443"}
      - {name: tcp, kind: tcp, target: "192.0.2.1:443"}
      - {name: late, kind: tcp, target: "192.0.2.1:443"}
      - {name: never, kind: http, target: "https://example.org/never"}
"""


def _recorded_store(config_text: str, results: int) -> tuple[ResultStore, Config]:
    store = ResultStore()
    config = load_text(config_text)
    store.apply_config(config)
    for index, check in enumerate(config.checks()):
        if index % 7 == 6:
            continue  # not run yet: no lines
        verdict = Verdict.OK if index % 3 else Verdict.TCP_REFUSED
        for run in range(results):
            result = Result(verdict, duration=0.001 * index, status_code=200, rate=5.5)
            result.cert_expiry = None if index % 2 else 1.8e9
            result.bytes_received = 1000 * run
            result.resolvers = [ResolverAnswer("system", verdict, ["192.0.2.1"])]
            result.finished = 1.7e9 + index + run
            store.record(check, result)
    return store, config


def test_the_length_a_scrape_announces_is_what_it_writes_for_every_kind() -> None:
    # Runs with and without the lines only some runs have (a cert expiry, a latency), and a
    # check that has not run (the seventh).
    store, _ = _recorded_store(EVERY_KIND, results=3)
    body = Pieces.of(store.exposition_parts())
    text = b"".join(body.batches(WRITE_BATCH))
    assert body.length == len(text) and text.startswith(store.reachability_exposition())


def test_collecting_a_scrape_copies_nothing_per_check(tmp_path: Path) -> None:
    # The scrape's first byte waits for the collection, under the store's lock that every
    # check's record() takes: reading every family's chunk of every check (a list per family,
    # 25-60 ms at 10,000 checks), or even a reference per check (two lists of 40 KB at 5,000
    # checks), is what it must not do.
    checks = 5000
    store, _ = _recorded_store(_config(checks, "127.0.0.1:9"), results=1)
    store.exposition_parts()  # what is made once (caches, the process collector) made
    tracemalloc.start()
    try:
        parts = store.exposition_parts()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert Pieces.of(parts).length > checks * 1000
    assert peak < 20_000, f"collecting {checks} checks allocated {peak} bytes at its peak"


def test_a_collected_scrape_writes_what_it_was_collected_with_while_checks_record() -> None:
    # A plain scrape is written over many turns of the event loop, during which checks
    # record results: the body it writes is the one it announced, all of one moment.
    store, config = _recorded_store(EVERY_KIND, results=1)
    collected = Pieces.of(store.exposition_parts())
    before = store.reachability_exposition()
    for check in config.checks():
        result = Result(Verdict.TCP_REFUSED, duration=0.5)
        result.finished = 1.8e9
        store.record(check, result)
    assert store.reachability_exposition() != before
    text = b"".join(collected.batches(WRITE_BATCH))
    assert len(text) == collected.length and text.startswith(before)


def test_a_checks_rendered_lines_are_nothing_the_garbage_collector_walks() -> None:
    # The scheduler runs a full collection on the event loop every 30 s: every object it
    # tracks per check (30,000 Spliced objects at 10,000 checks) makes each one longer.
    store, config = _recorded_store(_config(200, "127.0.0.1:9"), results=2)
    # A collection stops tracking a tuple of untracked items: the skeletons in the first,
    # the rendered tuple holding them in the next. Not frozen ones: a scheduler run by an
    # earlier test in this process froze what existed then, shared skeletons included.
    gc.unfreeze()
    gc.collect()
    gc.collect()
    states = store.snapshot().states
    for check in config.checks():
        rendered = states[check.key].rendered
        tracked = [chunk for chunk in rendered if gc.is_tracked(chunk)]
        assert not tracked and not gc.is_tracked(rendered), f"{check.name}: {tracked[:2]}"


def test_a_result_the_store_keeps_holds_no_list_for_the_garbage_collector() -> None:
    # The store keeps every check's last result, and a full collection walks every list
    # they hold: two per result (addresses, resolvers) were 22,500 of the 62,000 objects it
    # walked at 10,000 checks. A tuple of strings it stops tracking.
    store = ResultStore()
    config = load_text(_config(20, "127.0.0.1:9"))
    store.apply_config(config)
    for check in config.checks():
        result = Result(Verdict.OK, duration=0.01, addresses=["192.0.2.1", "192.0.2.2"])
        result.resolvers = [ResolverAnswer("system", Verdict.OK, ["192.0.2.1"])]
        store.record(check, result)
    gc.collect()
    for state in store.snapshot().states.values():
        assert state.result is not None
        held = [state.result.addresses, *(a.addresses for a in state.result.resolvers)]
        assert not any(map(gc.is_tracked, held)), held
        assert state.result.to_dict()["addresses"] == ["192.0.2.1", "192.0.2.2"]
