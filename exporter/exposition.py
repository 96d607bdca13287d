"""Prometheus text format 0.0.4, written by hand so that a check's lines can be rendered
once, when its result is recorded, and a scrape only joins bytes. Escaping and number
formatting follow prometheus_client's, so the output is the one it would give.

A check's largest chunks (its latency histogram, its failure counters) are kept as Spliced:
the parts of a skeleton of the text around the check's labels, shared with every other
check that has the same counts; the labels go between them as a scrape writes them. At
10,000 checks the two held 25 MB as plain bytes, mostly copies of the same few lines with
other labels; joined at scrape time they cost a C-level join per check."""

from __future__ import annotations

import bisect
import enum
import functools
import itertools
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from exporter.metricnames import Family

INF = float("inf")


def number(value: float) -> str:
    """A sample value as prometheus_client writes it (Go's float formatting)."""
    if value == INF:
        return "+Inf"
    if value == -INF:
        return "-Inf"
    if value != value:
        return "NaN"
    text = repr(float(value))
    dot = text.find(".")
    # Go switches to exponents sooner than Python (timestamps become 1.7e+09).
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def label_set(names: Iterable[str], values: Iterable[str]) -> str:
    """`a="x",b="y"` (no braces), so more labels can be appended with a comma."""
    return ",".join(f'{name}="{label_value(v)}"' for name, v in zip(names, values, strict=True))


def sample(name: str, labels: str, value: float) -> str:
    if labels:
        return f"{name}{{{labels}}} {number(value)}\n"
    return f"{name} {number(value)}\n"


# A chunk of Form.SPLICED: the parts of a skeleton, whose text for a check is
# `labels.join(parts)`. A plain tuple of bytes, not an object of its own: the garbage
# collector stops tracking such a tuple, where it tracked 30,000 objects with slots at
# 10,000 checks (a quarter of what each full collection walked, on the event loop).
Spliced = tuple[bytes, ...]

# A check that has not run yet has no lines.
NO_LINES: Spliced = ()


def spliced_length(labels: bytes, parts: Spliced) -> int:
    """The bytes of `labels.join(parts)`, without joining."""
    return len(labels) * (len(parts) - 1) + sum(map(len, parts)) if parts else 0


@functools.lru_cache(maxsize=4096)
def tail(value: float) -> bytes:
    """`} value` and the newline: what a one-line family keeps of a check's line, the name
    and labels being the column's (Form.TAIL). Common values (0, 1, an interval, a run
    count) are one shared object for every check."""
    return f"}} {number(value)}\n".encode()


class Form(enum.Enum):
    """What a family's chunk of one check is."""

    TEXT = "text"  # its lines as bytes
    SPLICED = "spliced"  # a Spliced: a skeleton the check's labels go between
    TAIL = "tail"  # its one line's tail, or b"" for no line: `name{` and labels go before it


# A window starts at this many checks and doubles while its text is short (see _windows).
_FIRST_STEP = 64


class Column:
    """Text that a scrape writes a window at a time, each window the chunks of many checks
    joined in one call, so that 200,000 chunks at 10,000 checks cost a few hundred joins
    rather than a Python step per chunk."""

    __slots__ = ("length",)
    length: int

    def __len__(self) -> int:
        return self.length

    def __bytes__(self) -> bytes:
        return b"".join(self.windows(1 << 62))

    def windows(self, size: int) -> Iterator[bytes]:
        """The text in order, in windows of about `size` bytes (a header alone, or the end
        of a family, may be shorter)."""
        raise NotImplementedError


def _windows(texts: Callable[[int, int], list[bytes]], count: int, size: int) -> Iterator[bytes]:
    """`texts(start, stop)` for checks start..stop, joined in windows of about `size`: a
    window grows while its text is under half of `size`, shrinks when it is over twice
    that. A family's chunks range from 10 bytes (a tail) to kilobytes (a histogram). The
    join measures the window: no pass to add up lengths first."""
    start, step = 0, _FIRST_STEP
    while start < count:
        stop = min(start + step, count)
        window = b"".join(texts(start, stop))
        if len(window) > 2 * size and step > 1:
            step //= 2
            continue
        start = stop
        if window:
            yield window
        if len(window) < size // 2:
            step *= 2


class CheckLayout:
    """The per-check families in exposition order: each one's header and the Form of its
    chunks. A check's rendered tuple holds one chunk per family; the layout knows how many
    bytes those chunks take in the exposition (so the store keeps the Content-Length as a
    running total instead of reading every chunk at scrape time)."""

    def __init__(self, families: Sequence[tuple[str, bytes, Form]]) -> None:
        """(name, header, form) per family, in exposition order."""
        self.families = tuple(
            (header, form, _opening(name), operator.itemgetter(index))
            for index, (name, header, form) in enumerate(families)
        )
        self._texts = tuple(i for i, (_, _, form) in enumerate(families) if form is Form.TEXT)
        self._spliced = tuple(i for i, (_, _, form) in enumerate(families) if form is Form.SPLICED)
        self._tails = tuple(
            (index, len(_opening(name)))
            for index, (name, _, form) in enumerate(families)
            if form is Form.TAIL
        )
        self.headers_length = sum(len(header) for _, header, _ in families)

    def length(self, chunks: Sequence[Any], labels: bytes) -> int:
        """The bytes one check's chunks take in the exposition, headers not counted: a tail's
        line is `name{` + labels + the tail."""
        total = 0
        for index in self._texts:
            total += len(chunks[index])
        for index in self._spliced:
            total += spliced_length(labels, chunks[index])
        for index, opening in self._tails:
            if chunks[index]:
                total += opening + len(labels) + len(chunks[index])
        return total

    def column(
        self, rendered: list[tuple[Any, ...]], labels: list[bytes], length: int
    ) -> CheckLines:
        """Every check's lines, family by family; `length` is the sum of `self.length` over
        the checks (kept by each check as it renders)."""
        families = self.family_chunks(rendered)
        return CheckLines(self, families, rendered, labels, self.headers_length + length)

    def family_chunks(self, rendered: list[tuple[Any, ...]]) -> list[list[Any]]:
        """Each family's chunks of the checks' tuples, in the checks' order."""
        return [list(map(chunk_of, rendered)) for *_, chunk_of in self.families]


class CheckColumns:
    """The checks' rendered chunks as the store keeps them for scrapes: one list per family,
    in configuration order, besides the checks' tuples and labels. A scrape joins a slice of
    a family's list; reading each chunk out of each check's tuple cost a memory access per
    chunk (210,000 at 10,000 checks, 15-20 ms of a 50 ms plain scrape on the event loop).

    A scrape takes the lists themselves, no copy. The first write to a list after that
    copies it (copy on write: 80 KB at 10,000 checks), so a scrape reads the chunks it was
    collected with while checks go on recording."""

    __slots__ = ("_lengths", "_lists", "_shared", "layout", "length")

    def __init__(
        self,
        layout: CheckLayout,
        rendered: list[tuple[Any, ...]],
        labels: list[bytes],
        lengths: list[int],
    ) -> None:
        self.layout = layout
        # Each family's chunks, then the checks' tuples and their labels.
        self._lists = [*layout.family_chunks(rendered), list(rendered), list(labels)]
        self._shared = [False] * len(self._lists)
        self._lengths = list(lengths)
        self.length = sum(lengths)

    def set(self, index: int, chunks: tuple[Any, ...], labels: bytes, length: int) -> None:
        """Check number `index` rendered `chunks`: a list is written only where its chunk is
        a new object (a render keeps the chunks that did not change)."""
        self.length += length - self._lengths[index]
        self._lengths[index] = length
        for number, value in enumerate((*chunks, chunks, labels)):
            values = self._lists[number]
            if values[index] is not value:
                if self._shared[number]:
                    values = self._lists[number] = values.copy()
                    self._shared[number] = False
                values[index] = value

    def lines(self) -> CheckLines:
        """What a scrape writes, read from the lists as they are now."""
        self._shared = [True] * len(self._lists)
        *families, rendered, labels = self._lists
        return CheckLines(
            self.layout, families, rendered, labels, self.layout.headers_length + self.length
        )


class CheckLines(Column):
    """The per-check families of the exposition, as a scrape writes them: each family's
    chunks, the checks' labels that a scrape puts around them, and the checks' tuples (by
    which a gzipped scrape sees which checks rendered since the last). None of these lists
    is changed once collected (CheckColumns copies on write)."""

    __slots__ = ("families", "labels", "layout", "rendered")

    def __init__(
        self,
        layout: CheckLayout,
        families: list[list[Any]],
        rendered: list[tuple[Any, ...]],
        labels: list[bytes],
        length: int,
    ) -> None:
        self.layout = layout
        self.families = families
        self.rendered = rendered
        self.labels = labels
        self.length = length

    def windows(self, size: int) -> Iterator[bytes]:
        count = len(self.rendered)
        for family, (header, *_) in enumerate(self.layout.families):
            yield header
            yield from _windows(self._texts(family), count, size)

    def text(self, family: int, start: int, stop: int) -> bytes:
        """The lines of family number `family` (in layout order, header not included) of
        checks start..stop."""
        return b"".join(self._texts(family)(start, stop))

    def _texts(self, family: int) -> Callable[[int, int], list[bytes]]:
        _, form, opening, _ = self.layout.families[family]
        chunks = self.families[family]

        def text(start: int, stop: int) -> list[Any]:
            return chunks[start:stop]

        if form is Form.TEXT:
            return text
        if form is Form.SPLICED:
            return _spliced(text, self.labels)
        return _tails(text, self.labels, opening)


def _spliced(
    chunks: Callable[[int, int], list[Any]], labels: list[bytes]
) -> Callable[[int, int], list[bytes]]:
    def text(start: int, stop: int) -> list[bytes]:
        # map with bytes.join: one C-level call per check, no Python step.
        return list(map(bytes.join, labels[start:stop], chunks(start, stop)))

    return text


def _tails(
    chunks: Callable[[int, int], list[Any]], labels: list[bytes], opening: bytes
) -> Callable[[int, int], list[bytes]]:
    def text(start: int, stop: int) -> list[bytes]:
        tails, own = chunks(start, stop), labels[start:stop]
        if b"" in tails:  # checks without the line (no cert expiry before a handshake)
            present = list(map(bool, tails))
            tails = list(itertools.compress(tails, present))
            own = list(itertools.compress(own, present))
        # Interleaved by slice assignment: no Python step per line.
        out = [opening] * (3 * len(tails))
        out[1::3] = own
        out[2::3] = tails
        return out

    return text


# What the exposition is held as: text, or a column.
Piece = bytes | Column


def piece_bytes(piece: Piece) -> bytes:
    return piece if type(piece) is bytes else bytes(piece)


def join(pieces: Sequence[Piece]) -> bytes:
    return b"".join(map(piece_bytes, pieces))


@functools.lru_cache(maxsize=16)
def _bucket_text(name: str, buckets: tuple[float, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A histogram's `,le="bound"}` closes, and the name of each line's successor after the
    name of the first: every `_bucket` line is followed by another but the last (+Inf), which
    is followed by `_count`."""
    closes = (*(f',le="{bound!r}"}}' for bound in buckets), ',le="+Inf"}')
    followers = (name + "_bucket",) * (len(buckets) + 1) + (name + "_count",)
    return closes, followers


@functools.lru_cache(maxsize=64)
def _opening(name: str) -> bytes:
    return f"{name}{{".encode()


# Bounded: the parts of counts that checks share (0, or the number of runs so far, which
# checks started together share) are found here; a part no other check has falls out.
@functools.lru_cache(maxsize=8192)
def _value_then(close: str, value: float, next_name: str) -> bytes:
    """`<close> <value>` ending a line, and the opening of the next line's labels."""
    return f"{close} {number(value)}\n{next_name}{{".encode()


@functools.lru_cache(maxsize=1024)
def labelled_lines(
    name: str, label: str, pairs: tuple[tuple[str, float], ...]
) -> tuple[bytes, ...]:
    """The skeleton of one line `name{<labels>,label="value"} number` per (value, number)
    pair: the same skeleton object for every check with the same pairs (a kind's failure
    counters all at zero, say)."""
    if not pairs:
        return ()
    parts = [_opening(name)]
    for index, (value, count) in enumerate(pairs):
        close = f',{label}="{label_value(value)}"}}'
        if index < len(pairs) - 1:
            parts.append(_value_then(close, count, name))
        else:
            parts.append(f"{close} {number(count)}\n".encode())
    return tuple(parts)


class Histogram:
    """A bucket counter (the store's own, so a check's copy goes with the check). Buckets are
    kept per slot and made cumulative on export."""

    __slots__ = ("buckets", "counts", "total")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last slot is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def copy(self) -> Histogram:
        other = Histogram(self.buckets)
        other.counts = list(self.counts)
        other.total = self.total
        return other

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip((*self.buckets, INF), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == INF else repr(bound), float(running)))
        return out

    def skeleton(self, family: Family) -> tuple[bytes, ...]:
        """The lines of `render(family, labels)` as the parts around a non-empty labels: all
        shared with other checks but the last, which holds the sum. Made on every ok run
        of every check, so what does not depend on the counts is made once (_bucket_text)."""
        closes, followers = _bucket_text(family.name, self.buckets)
        parts = [_opening(followers[0])]
        running = 0
        for close, count, following in zip(closes, self.counts, followers[1:], strict=True):
            running += count
            parts.append(_value_then(close, float(running), following))
        parts.append(_value_then("}", float(running), family.name + "_sum"))
        parts.append(f"}} {number(self.total)}\n".encode())
        return tuple(parts)

    def render(self, family: Family, labels: str) -> str:
        """_bucket lines, then _count and _sum, as prometheus_client orders them."""
        prefix = labels + "," if labels else ""
        lines = [
            f'{family.name}_bucket{{{prefix}le="{bound}"}} {number(count)}\n'
            for bound, count in self.cumulative()
        ]
        lines.append(sample(family.name + "_count", labels, float(sum(self.counts))))
        lines.append(sample(family.name + "_sum", labels, self.total))
        return "".join(lines)
