"""/metrics gzipped a segment at a time (README: "The exporter under load"): a gzipped body
is one gzip member that decompresses to the plain body of the same collection, however
the checks changed since the last one, and a gzipped scrape compresses only the segments
whose checks changed. Real zlib, the real store; a real Prometheus reads it."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import urllib.request
import zlib
from pathlib import Path

from exporter.app import Exporter
from exporter.config import Config, load_text
from exporter.exposition import CheckLines
from exporter.metrics import ResultStore
from exporter.result import ResolverAnswer, Result
from exporter.verdicts import Verdict
from exporter.webconfig import WebConfig
from exporter.webserver import gzipbody
from exporter.webserver.exposition import GZIP_REFRESH_EVERY
from exporter.webserver.gzipbody import GzipBody
from exporter.webserver.reply import Pieces
from exporter.webserver.server import WebServer
from peers import prometheus_harness as ph

KINDS = ("tcp", "dns", "tls", "http")


def _config(names: list[str]) -> Config:
    lines = []
    for index, name in enumerate(names):
        kind = KINDS[index % len(KINDS)]
        target = {"tcp": "127.0.0.1:9", "dns": "a.test", "tls": "127.0.0.1:9"}.get(
            kind, "http://127.0.0.1:9/"
        )
        lines.append(f'      - {{name: {name}, kind: {kind}, target: "{target}"}}')
    return load_text(
        "defaults: {interval: 60s, timeout: 300ms}\nbogons: []\n"
        "services:\n  many:\n    checks:\n" + "\n".join(lines) + "\n"
    )


def _run(store: ResultStore, config: Config, which: range, seed: int) -> None:
    """A run of each check in `which`: ok or failed, a new latency, some with a cert."""
    rng = random.Random(seed)
    checks = list(config.checks())
    for index in which:
        verdict = Verdict.OK if rng.random() < 0.8 else Verdict.TCP_REFUSED
        result = Result(verdict, duration=rng.random(), status_code=200)
        result.cert_expiry = 1.8e9 if index % 2 else None
        result.resolvers = [ResolverAnswer("system", verdict, ["192.0.2.1"])]
        result.finished = 1.7e9 + seed + index
        store.record(checks[index], result)


def _gunzip_one_member(body: Pieces) -> bytes:
    """The text of a gzip body that must be exactly one member (some clients read no more)."""
    reader = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = reader.decompress(body.joined())
    assert reader.eof and reader.unused_data == b"", "not exactly one gzip member"
    return text


def test_a_gzipped_body_is_the_plain_one_after_runs_reloads_and_renames() -> None:
    names = [f"c{i}" for i in range(700)]
    config = _config(names)
    store = ResultStore()
    store.apply_config(config)
    gzipped = GzipBody()

    def agrees() -> None:
        plain = Pieces.of(store.exposition_parts())
        assert _gunzip_one_member(gzipped.compress(plain)) == plain.joined()

    agrees()  # nothing has run
    _run(store, config, range(0, 700, 2), seed=1)
    agrees()
    _run(store, config, range(700), seed=2)
    agrees()
    _run(store, config, range(300, 310), seed=3)  # a few neighbours, as the schedule runs them
    agrees()
    agrees()  # nothing changed
    # A reload that removes some, renames some, and adds some: segments shift and change.
    names = [n for i, n in enumerate(names) if i % 9] + ["late1", "late2"]
    names[5] = "renamed"
    config = _config(names)
    store.apply_config(config)
    agrees()
    _run(store, config, range(len(names)), seed=4)
    agrees()
    # Checks removed from the end, then added there: the last segment shrinks, then grows.
    for changed in (names[:-3], [*names[:-3], "new1", "new2", "new3", "new4"]):
        config = _config(changed)
        store.apply_config(config)
        agrees()


def test_a_gzipped_scrape_compresses_only_what_changed_since_the_last() -> None:
    config = _config([f"c{i}" for i in range(2000)])
    store = ResultStore()
    store.apply_config(config)
    _run(store, config, range(2000), seed=1)
    gzipped = GzipBody()
    first = Pieces.of(store.exposition_parts())
    gzipped.compress(first)
    assert gzipped.compressed >= first.length - 4096  # all of it (but the constant headers)
    # 100 neighbouring checks ran: 5% of the checks, in one segment (of 128) of each family
    # that changed, which is 1/16 of it.
    _run(store, config, range(1024, 1124), seed=2)
    second = Pieces.of(store.exposition_parts())
    gzipped.compress(second)
    assert gzipped.compressed < second.length * 0.07, (gzipped.compressed, second.length)
    third = Pieces.of(store.exposition_parts())
    gzipped.compress(third)
    # At most the exporter's own lines after the checks' (process_* change as it runs).
    column = third.pieces[0]
    assert isinstance(column, CheckLines)
    assert gzipped.compressed <= third.length - len(column)


def test_crc32s_combine_to_the_crc32_of_the_joined_text() -> None:
    rng = random.Random(7)
    for _ in range(50):
        first = rng.randbytes(rng.randrange(0, 3000))
        second = rng.randbytes(rng.randrange(0, 300_000))
        whole = zlib.crc32(first + second)
        args = (zlib.crc32(first), zlib.crc32(second), len(second))
        assert gzipbody.crc32_combine_function()(*args) == whole
        assert gzipbody._zeros_crc32_combine(*args) == whole


def test_prometheus_reads_every_gzipped_scrape_of_a_large_changing_body(tmp_path: Path) -> None:
    # 600 checks that run every second: a body of ~2 MB, over the size compressed at once,
    # with segments compressed at different times; Go's gzip reader checks the CRC-32 and
    # the length of what it read against the member's trailer.
    lines = [f'      - {{name: c{i}, kind: tcp, target: "127.0.0.1:9"}}' for i in range(600)]
    config = tmp_path / "exporter.yaml"
    config.write_text(
        "defaults: {interval: 1s, timeout: 300ms}\nbogons: []\n"
        "services:\n  many:\n    checks:\n" + "\n".join(lines) + "\n"
    )
    with ph.Cleanup() as stack:
        exporter = stack.add_process(ph.Exporter("exporter", config, tmp_path))
        scrape = {"job_name": "big", "scrape_interval": "1s", "scrape_timeout": "900ms",
                  "static_configs": [{"targets": [exporter.address]}]}  # fmt: skip
        prometheus = stack.add_process(
            ph.Prometheus("prometheus", {"scrape_configs": [scrape]}, tmp_path)
        )

        def scraped() -> bool:
            runs = prometheus.query('count_over_time(up{job="big"}[30s])')
            return bool(runs) and float(runs[0]["value"][1]) >= 8

        ph.wait_for("eight scrapes", scraped, timeout=60)
        failed = prometheus.query('count_over_time((up{job="big"} == 0)[30s:1s])')
        assert not failed, json.dumps(failed)
        counted = prometheus.query('count(reachability_check_runs_total{job="big"} > 1)')
        assert counted and int(counted[0]["value"][1]) == 600


def test_between_gzipped_scrapes_what_changed_is_compressed_in_the_background() -> None:
    # A gzipped scrape then finds nothing left to compress but the exporter's own lines.
    async def scrape_twice() -> tuple[int, int, int]:
        exporter, config = _ran_exporter(1000)
        server = WebServer(exporter, ["127.0.0.1:0"], WebConfig)
        await server.start()
        url = f"http://127.0.0.1:{server.ports[0]}/metrics"
        telemetry = server.router.telemetry
        try:
            await asyncio.to_thread(_fetch_gzip, url)
            first = telemetry.gzip_segments.compressed
            _run(exporter.store, config, range(0, 1000, 3), seed=2)
            await asyncio.sleep(GZIP_REFRESH_EVERY * 1.5)
            background = telemetry.gzip_segments.compressed
            await asyncio.to_thread(_fetch_gzip, url)
            return first, background, telemetry.gzip_segments.compressed
        finally:
            await server.stop()

    first, background, last = asyncio.run(scrape_twice())
    # The refresh compressed the changed segments: a third of the checks ran, in every segment.
    assert first / 4 < background < first, (first, background)
    assert last < 8192, last  # the second scrape: the exporter's own lines at most


def _ran_exporter(checks: int) -> tuple[Exporter, Config]:
    """An exporter (not started) whose checks have each run once."""
    exporter = Exporter("unused.yaml")
    config = _config([f"c{i}" for i in range(checks)])
    exporter.store.apply_config(config)
    _run(exporter.store, config, range(checks), seed=1)
    return exporter, config


def _fetch_gzip(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers.get("Content-Encoding") == "gzip"
        return gzip.decompress(response.read())


def test_gzip_refreshes_stop_with_the_server() -> None:
    # The refresher runs while gzip clients come; a stopped server leaves no task behind.
    async def serve() -> set[asyncio.Task[object]]:
        exporter, _ = _ran_exporter(400)
        server = WebServer(exporter, ["127.0.0.1:0"], WebConfig)
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.ports[0])
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        writer.close()
        await server.stop()
        await asyncio.sleep(0)
        return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}

    assert asyncio.run(serve()) == set()
