"""Parsing of the configuration's durations, sizes and rates (CONTRACT.md units)."""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB)?")
_SIZE_FACTOR = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*(bit|kbit|Mbit|Gbit|B|KB|MB|GB)(?:/s|ps)?")
# Rates are decimal, as network people quote them: 1 kbit = 1000 bits.
_RATE_BYTES_PER_SECOND = {
    "bit": 1 / 8,
    "kbit": 1e3 / 8,
    "Mbit": 1e6 / 8,
    "Gbit": 1e9 / 8,
    "B": 1.0,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
}


class UnitError(ValueError):
    """A value that is not a valid duration, size or rate; the message says what is expected."""


def parse_duration(value: object) -> float:
    """`500ms`, `10s`, `5m`, `1h` or compounds such as `1m30s` → seconds (> 0)."""
    if not isinstance(value, str) or not value:
        raise UnitError(f"invalid duration {value!r}: expected e.g. 500ms, 10s, 5m, 1h")
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(value):
        raise UnitError(f"invalid duration {value!r}: expected e.g. 500ms, 10s, 5m, 1h")
    if total <= 0:
        raise UnitError(f"invalid duration {value!r}: must be greater than zero")
    return total


def parse_size(value: object) -> int:
    """`65536`, `64KiB`, `1MiB` → bytes (> 0); suffixes are binary."""
    if isinstance(value, bool):
        raise UnitError(f"invalid size {value!r}: expected bytes, e.g. 65536, 64KiB, 1MiB")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise UnitError(f"invalid size {value!r}: expected bytes, e.g. 65536, 64KiB, 1MiB")
        size = int(match.group(1)) * _SIZE_FACTOR[match.group(2)]
    if size <= 0:
        raise UnitError(f"invalid size {value!r}: must be greater than zero")
    return size


def parse_rate(value: object) -> float:
    """Bytes per second as a number, or `200kbit`, `1Mbit`, `50KB` … (decimal) → bytes/s."""
    if isinstance(value, bool):
        raise UnitError(f"invalid rate {value!r}: expected bytes/s or e.g. 200kbit, 1Mbit, 50KB")
    if isinstance(value, int | float):
        rate = float(value)
    else:
        match = _RATE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise UnitError(
                f"invalid rate {value!r}: expected bytes/s or e.g. 200kbit, 1Mbit, 50KB"
            )
        rate = float(match.group(1)) * _RATE_BYTES_PER_SECOND[match.group(2)]
    if rate <= 0:
        raise UnitError(f"invalid rate {value!r}: must be greater than zero")
    return rate


def format_duration(seconds: float) -> str:
    """Inverse of parse_duration for messages and the status page."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds < 60 or seconds % 60:
        return f"{seconds:g}s"
    if seconds < 3600 or seconds % 3600:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"
