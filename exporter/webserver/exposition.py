"""/metrics: the exposition rendered off the event loop, shared by scrapes that arrive while
it is being rendered, and gzipped (once per rendering) for clients that accept it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip

from exporter.app import Exporter

# The Prometheus text format 0.0.4, which every Prometheus scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Bodies below this are compressed on the loop: a thread hop costs more than zlib on 64 KiB.
# Larger ones go to a thread, since zlib releases the GIL and the probes keep the loop.
INLINE_GZIP_MAX = 64 * 1024
# Level 6 is zlib's default and client_golang's: ~8x smaller text for the same CPU as gzip's 9.
GZIP_LEVEL = 6


def render_exposition(exporter: Exporter) -> bytes:
    """The exposition as Prometheus scrapes it, joined from the pieces the store keeps
    pre-rendered as results arrive."""
    return exporter.store.exposition()


def accepts_gzip(accept_encoding: str) -> bool:
    """True when an Accept-Encoding header names gzip (or x-gzip) without q=0."""
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.partition(";")
        if coding.strip() not in ("gzip", "x-gzip"):
            continue
        quality = params.strip()
        if quality.startswith("q="):
            try:
                return float(quality[2:]) > 0
            except ValueError:
                return False
        return True
    return False


class _Rendering:
    """One rendering of the exposition and, when some client asked, its gzipped form."""

    def __init__(self, plain: bytes) -> None:
        self.plain = plain
        self._gzipped: asyncio.Future[bytes] | None = None

    async def gzipped(self, pool: concurrent.futures.Executor) -> bytes:
        if self._gzipped is None:
            loop = asyncio.get_running_loop()
            if len(self.plain) <= INLINE_GZIP_MAX:
                self._gzipped = loop.create_future()
                self._gzipped.set_result(_compress(self.plain))
            else:
                self._gzipped = asyncio.ensure_future(
                    loop.run_in_executor(pool, _compress, self.plain)
                )
        return await asyncio.shield(self._gzipped)


def _compress(data: bytes) -> bytes:
    # mtime=0: the same exposition compresses to the same bytes.
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


class Telemetry:
    """Scrapes that arrive while a rendering is under way wait for it instead of starting
    their own, so a hundred scrapers cost one rendering, not a hundred. The answer is at
    most one rendering older than the request."""

    def __init__(self, exporter: Exporter, pool: concurrent.futures.Executor) -> None:
        self._exporter = exporter
        self._pool = pool
        self._current: asyncio.Future[_Rendering] | None = None

    async def body(self, gzipped: bool) -> bytes:
        rendering = await self._rendering()
        return await rendering.gzipped(self._pool) if gzipped else rendering.plain

    async def _rendering(self) -> _Rendering:
        if self._current is None:
            loop = asyncio.get_running_loop()
            current = asyncio.ensure_future(loop.run_in_executor(self._pool, self._render))
            self._current = current
            current.add_done_callback(self._finished)
        # shield: a client that goes away must not cancel the rendering others wait for.
        return await asyncio.shield(self._current)

    def _render(self) -> _Rendering:
        return _Rendering(render_exposition(self._exporter))

    def _finished(self, future: asyncio.Future[_Rendering]) -> None:
        if self._current is future:
            self._current = None
