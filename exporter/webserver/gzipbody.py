"""The gzipped exposition, kept as independently compressed segments that are compressed
again only when their text changed, so that a gzipped scrape costs the changes since the
last one, not the whole body.

At 10,000 checks the body is 40 MB, and zlib at its fastest level takes 130 ms of a core
for it: every gzipped scrape (what Prometheus asks for) took 250 ms. Most of that text is
the same from one scrape to the next: a check that has not run since keeps its rendered
tuple, and one that has run keeps the chunks that did not change (its failure counters,
its info and interval lines), so a segment of one family of 128 checks is compressed again
only if one of those checks' chunks of that family is a new object.

Each segment is raw deflate ended by a full flush: byte-aligned, and referring to nothing
before it, so segments compressed at different times join into one deflate stream. The
stream is one gzip member, whose CRC-32 is combined from the segments' own: a client that
inflates a body once (Python's `zlib.decompress(body, 31)`, say) reads only the first of
several members, and says nothing of the rest."""

from __future__ import annotations

import functools
import operator
import struct
import threading
import zlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from exporter.exposition import CheckLines, piece_bytes
from exporter.webserver.reply import Pieces

# Level 1, not zlib's default 6: the exposition is so repetitive that level 1 already makes
# it ~24x smaller, and level 6 gains only a sixth more for three times the CPU (40 MB of
# 10,000 checks as one stream: 0.14 s against 0.42 s of a core, 1.65 MB against 1.41 MB;
# in segments, 2.4 MB at level 1).
GZIP_LEVEL = 1
# Checks per segment of a family. A check that runs changes its segment of each family that
# changed; the scheduler spreads first runs in configuration order, so checks that run close
# together are neighbours, and a segment is compressed about once per interval. Smaller
# segments compress worse and cost more to compare; larger ones are compressed again for
# changes in fewer of their checks.
CHECKS_PER_SEGMENT = 128

# gzip (RFC 1952): magic, deflate, no flags, no mtime (the same text gives the same bytes),
# no extra flags, OS unknown.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
# The last block of the stream: empty, final, fixed Huffman codes.
FINAL_BLOCK = b"\x03\x00"

# One segment: its deflate bytes, the CRC-32 and the length of its text.
Segment = tuple[bytes, int, int]
_NOTHING: Segment = (b"", 0, 0)


def _zeros_crc32_combine(first: int, second: int, second_length: int) -> int:
    """CRC-32 of A+B from crc(A), crc(B) and len(B). CRC-32 is affine in its register, so
    crc(B, start=c) = crc(B) ^ crc(zeros, start=c) ^ crc(zeros), zeros being len(B) zero
    bytes: linear in len(B), used only where zlib's own crc32_combine cannot be loaded."""
    zeros = bytes(min(second_length, 1 << 20))
    shifted, plain, left = first, 0, second_length
    while left:
        step = zeros if left >= len(zeros) else zeros[:left]
        shifted, plain = zlib.crc32(step, shifted), zlib.crc32(step, plain)
        left -= len(step)
    return second ^ shifted ^ plain


@functools.cache
def crc32_combine_function() -> Callable[[int, int, int], int]:
    """zlib's crc32_combine (logarithmic in the length), from the libz that Python's zlib
    module is linked with on Debian; the linear one above where it cannot be loaded.
    Loaded when first needed: ctypes is not worth importing for a small body."""
    import ctypes

    try:
        libz = ctypes.CDLL("libz.so.1")
        combine = libz.crc32_combine64 if hasattr(libz, "crc32_combine64") else libz.crc32_combine
    except (OSError, AttributeError):
        return _zeros_crc32_combine
    combine.argtypes = (ctypes.c_ulong, ctypes.c_ulong, ctypes.c_int64)
    combine.restype = ctypes.c_ulong
    return combine


class _Deflater:
    """Segments from one compressor: a full flush after each ends it on a byte boundary and
    empties the window, so what follows refers to nothing before it."""

    def __init__(self) -> None:
        self._compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        self.fed = 0  # bytes of text compressed

    def segment(self, text: bytes) -> Segment:
        if not text:
            return _NOTHING
        self.fed += len(text)
        compressor = self._compressor
        deflated = compressor.compress(text) + compressor.flush(zlib.Z_FULL_FLUSH)
        return deflated, zlib.crc32(text), len(text)


def _fold(segments: Iterable[Segment]) -> tuple[int, int]:
    """The CRC-32 and length of the segments' text, in order."""
    crc32_combine = crc32_combine_function()
    crc = length = 0
    for _, segment_crc, segment_length in segments:
        if segment_length:
            crc = crc32_combine(crc, segment_crc, segment_length)
            length += segment_length
    return crc, length


class _Run:
    """Segments that are written in order (one family of a column, or the text between
    columns), with the CRC-32 and length of their text: folded once per change of the run,
    not per scrape (the 1,600 segments of 10,000 checks cost 4 ms to fold)."""

    __slots__ = ("crc", "deflated", "length", "segments")

    def __init__(self, segments: list[Segment]) -> None:
        self.segments = segments
        self.deflated = [deflated for deflated, _, length in segments if length]
        self.crc, self.length = _fold(segments)


def gzip_member(runs: Iterable[_Run]) -> Pieces:
    """One gzip member of the runs' text, in order."""
    crc32_combine = crc32_combine_function()
    out, crc, length = [GZIP_HEADER], 0, 0
    for run in runs:
        out += run.deflated
        crc = crc32_combine(crc, run.crc, run.length)
        length += run.length
    out.append(FINAL_BLOCK)
    out.append(struct.pack("<II", crc, length & 0xFFFFFFFF))
    return Pieces.of(out)


class _ColumnSegments:
    """The segments of one column as last compressed: per family a run of its header, then
    one segment per CHECKS_PER_SEGMENT checks."""

    def __init__(self, column: CheckLines, families: list[_Run]) -> None:
        self.column = column
        self.families = families


class GzipBody:
    """The gzipped form of successive collections of the exposition. `compress` is called
    from worker threads, one at a time (a lock), each call compressing again only what
    changed since the previous one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._columns: list[_ColumnSegments] = []
        self._literals: list[tuple[bytes, _Run]] = []
        # Bytes of text the last call compressed, of the body's `plain.length`.
        self.compressed = 0

    def compress(self, plain: Pieces) -> Pieces:
        with self._lock:
            deflater = _Deflater()
            runs: list[_Run] = []
            columns: list[_ColumnSegments] = []
            literals: list[tuple[bytes, _Run]] = []
            for part in _parts(plain):
                if isinstance(part, CheckLines):
                    column = _compress_column(part, _nth(self._columns, len(columns)), deflater)
                    columns.append(column)
                    runs += column.families
                else:
                    kept = _nth(self._literals, len(literals))
                    same = kept is not None and kept[0] == part
                    run = kept[1] if kept is not None and same else _Run([deflater.segment(part)])
                    literals.append((part, run))
                    runs.append(run)
            self._columns, self._literals = columns, literals
            self.compressed = deflater.fed
            return gzip_member(runs)


def _parts(plain: Pieces) -> list[CheckLines | bytes]:
    """The body as its columns and the text between them, joined: that text (the exporter's
    own lines, process_*) is short, and is one segment, compressed again when it changed."""
    parts: list[CheckLines | bytes] = []
    run: list[bytes] = []
    for piece in plain.pieces:
        if isinstance(piece, CheckLines):
            parts += (b"".join(run), piece)
            run = []
        else:
            run.append(piece_bytes(piece))
    parts.append(b"".join(run))
    return parts


_T = TypeVar("_T")


def _nth(items: list[_T], index: int) -> _T | None:
    return items[index] if index < len(items) else None


def _compress_column(
    column: CheckLines, kept: _ColumnSegments | None, deflater: _Deflater
) -> _ColumnSegments:
    rendered, count = column.rendered, len(column.rendered)
    bounds = [
        (start, min(start + CHECKS_PER_SEGMENT, count))
        for start in range(0, count, CHECKS_PER_SEGMENT)
    ]
    families: list[_Run] = []
    if kept is None or kept.column.layout is not column.layout:
        for family, (header, *_) in enumerate(column.layout.families):
            segments = [deflater.segment(header)]
            segments += (deflater.segment(column.text(family, *block)) for block in bounds)
            families.append(_Run(segments))
        return _ColumnSegments(column, families)
    before = kept.column
    # A segment can be kept only if it holds the same checks (the same labels, in order):
    # a reload that adds or removes checks shifts the segments after the first it changed.
    kept_blocks = [_same_checks(before, column, start, stop) for start, stop in bounds]
    # Blocks none of whose checks rendered since (the same tuples): every family keeps its
    # segment. In the others, a family keeps it if its chunks are the very objects they
    # were (a render keeps the chunks that did not change: metrics.py, same_check).
    untouched = [
        same and _same_objects(before.rendered, rendered, start, stop)
        for same, (start, stop) in zip(kept_blocks, bounds, strict=True)
    ]
    for family, (old_chunks, chunks) in enumerate(
        zip(before.families, column.families, strict=True)
    ):
        old = kept.families[family]
        old_segments = old.segments
        segments = [old_segments[0]]  # the header: the same layout
        changed = len(old_segments) != len(bounds) + 1
        for block, (start, stop) in enumerate(bounds):
            if untouched[block] or (
                kept_blocks[block] and _same_objects(old_chunks, chunks, start, stop)
            ):
                segments.append(old_segments[block + 1])
            else:
                segments.append(deflater.segment(column.text(family, start, stop)))
                changed = True
        families.append(_Run(segments) if changed else old)
    return _ColumnSegments(column, families)


def _same_checks(old: CheckLines, new: CheckLines, start: int, stop: int) -> bool:
    """Whether checks start..stop are the same checks they were (a label set is made once
    per check state, so the same check has the very same bytes)."""
    ended_alike = min(start + CHECKS_PER_SEGMENT, len(old.labels)) == stop
    return ended_alike and _same_objects(old.labels, new.labels, start, stop)


def _same_objects(old: list[Any], new: list[Any], start: int, stop: int) -> bool:
    return all(map(operator.is_, old[start:stop], new[start:stop]))
