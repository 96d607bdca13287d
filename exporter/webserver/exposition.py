"""/metrics: the exposition collected off the event loop as the pieces the store keeps, shared
by scrapes that arrive while it is being collected, written out without being joined, and
gzipped (once per collection, in a thread) for clients that accept it: a large body by
compressing again only the segments that changed (gzipbody.py), kept fresh between scrapes
while clients ask for gzip."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import zlib

from exporter.app import Exporter
from exporter.webserver.gzipbody import GZIP_LEVEL, GzipBody
from exporter.webserver.reply import Pieces

# The Prometheus text format 0.0.4, which every Prometheus scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Bodies below this are compressed on the loop: a thread hop costs more than zlib on 64 KiB.
# Larger ones go to a thread, since zlib releases the GIL and the probes keep the loop.
INLINE_GZIP_MAX = 64 * 1024
# While clients ask for gzip, the segments of a large body are compressed again this often
# between scrapes, so that a scrape finds at most this long's changes to compress: 1/30 of
# a 60 s interval's checks, at 10,000 checks 10-25 ms of a scrape. A refresh that finds
# nothing new costs a few ms. It stops when no client has asked for this long.
GZIP_REFRESH_EVERY = 2.0
GZIP_IDLE = 600.0
# zlib's window bits for a gzip wrapper (header and CRC-32 trailer) instead of zlib's own.
_GZIP_WBITS = 16 + zlib.MAX_WBITS
# The text is fed to zlib in joined slices of about this size: the compressor never sees a
# copy of the whole body.
GZIP_FEED = 1024 * 1024

log = logging.getLogger(__name__)


def collect_exposition(exporter: Exporter) -> Pieces:
    """The exposition as Prometheus scrapes it: the pieces the store keeps pre-rendered as
    results arrive, in order, not joined."""
    return Pieces.of(exporter.store.exposition_parts())


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


def gzip_pieces(plain: Pieces) -> Pieces:
    """A small body gzipped as one stream (header mtime 0: the same text compresses to the
    same bytes), fed a slice at a time, the output kept in the pieces zlib returns."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    out = [compressor.compress(batch) for batch in plain.batches(GZIP_FEED)]
    out.append(compressor.flush())
    return Pieces.of([chunk for chunk in out if chunk])


class _Rendering:
    """One collection of the exposition and, when some client asked, its gzipped form."""

    def __init__(self, plain: Pieces) -> None:
        self.plain = plain
        self._gzipped: asyncio.Future[Pieces] | None = None

    @property
    def small(self) -> bool:
        return self.plain.length <= INLINE_GZIP_MAX

    async def gzipped(self, pool: concurrent.futures.Executor, segments: GzipBody) -> Pieces:
        if self._gzipped is None:
            loop = asyncio.get_running_loop()
            if self.small:
                self._gzipped = loop.create_future()
                self._gzipped.set_result(gzip_pieces(self.plain))
            else:
                self._gzipped = asyncio.ensure_future(
                    loop.run_in_executor(pool, segments.compress, self.plain)
                )
        return await asyncio.shield(self._gzipped)


class Telemetry:
    """Scrapes that arrive while a collection is under way wait for it instead of starting
    their own, so a hundred scrapers cost one collection, not a hundred. The answer is at
    most one collection older than the request."""

    def __init__(self, exporter: Exporter, pool: concurrent.futures.Executor) -> None:
        self._exporter = exporter
        self._pool = pool
        self._current: asyncio.Future[_Rendering] | None = None
        # What the last gzipped collection compressed, for the next to start from.
        self.gzip_segments = GzipBody()
        self._gzip_asked = 0.0
        self._refresher: asyncio.Task[None] | None = None

    async def body(self, gzipped: bool) -> Pieces:
        rendering = await self._rendering()
        if not gzipped:
            return rendering.plain
        self._gzip_asked = asyncio.get_running_loop().time()
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_gzip(), name="gzip refresh")
        return await rendering.gzipped(self._pool, self.gzip_segments)

    def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()

    async def _refresh_gzip(self) -> None:
        """Compress what changed every GZIP_REFRESH_EVERY, as a gzipped scrape would, until
        no client has asked for gzip in GZIP_IDLE; then forget the segments, which hold
        references to the checks' rendered lines of the last compression. A small body is
        compressed whole when asked for, and not kept."""
        loop = asyncio.get_running_loop()
        try:
            while loop.time() - self._gzip_asked < GZIP_IDLE:
                await asyncio.sleep(GZIP_REFRESH_EVERY)
                rendering = await self._rendering()
                if not rendering.small:
                    await rendering.gzipped(self._pool, self.gzip_segments)
        except Exception:
            # A scrape that asks for gzip starts it again (and meets the same error).
            log.exception("keeping the gzipped exposition fresh failed")
        finally:
            self.gzip_segments = GzipBody()
            self._refresher = None

    async def _rendering(self) -> _Rendering:
        if self._current is None:
            loop = asyncio.get_running_loop()
            current = asyncio.ensure_future(loop.run_in_executor(self._pool, self._render))
            self._current = current
            current.add_done_callback(self._finished)
        # shield: a client that goes away must not cancel the rendering others wait for.
        return await asyncio.shield(self._current)

    def _render(self) -> _Rendering:
        return _Rendering(collect_exposition(self._exporter))

    def _finished(self, future: asyncio.Future[_Rendering]) -> None:
        if self._current is future:
            self._current = None
