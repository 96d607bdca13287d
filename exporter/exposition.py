"""Prometheus text format 0.0.4, written by hand so that a check's lines can be rendered
once, when its result is recorded, and a scrape only joins bytes. Escaping and number
formatting follow prometheus_client's, so the output is the one it would give."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

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
