"""Parsing of the configuration's durations, sizes and rates (CONTRACT.md units)."""

from __future__ import annotations

import math
import re

_NUMBER = r"([0-9]{1,15}(?:\.[0-9]{1,9})?)"
_DURATION_PART = re.compile(_NUMBER + r"(ms|s|m|h)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"([0-9]{1,15})\s*(B|KiB|MiB|GiB)?")
_SIZE_FACTOR = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_RATE = re.compile(_NUMBER + r"\s*(bit|kbit|Mbit|Gbit|bps|kbps|Mbps|Gbps|B|KB|MB|GB)(?:/s)?")
# Rates are decimal, as network people quote them: 1 kbit = 1000 bits.
_RATE_BYTES_PER_SECOND = {
    "bit": 1 / 8,
    "kbit": 1e3 / 8,
    "Mbit": 1e6 / 8,
    "Gbit": 1e9 / 8,
    "bps": 1 / 8,
    "kbps": 1e3 / 8,
    "Mbps": 1e6 / 8,
    "Gbps": 1e9 / 8,
    "B": 1.0,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
}
# Far beyond any sensible setting, and small enough that arithmetic on them stays exact.
MAX_DURATION = 365 * 24 * 3600.0
MAX_SIZE = 1024**4
MAX_RATE = 1e12

_DURATION_HINT = "expected a number with a unit, e.g. 500ms, 10s, 5m, 1h"
_SIZE_HINT = "expected bytes, e.g. 65536, 64KiB, 1MiB"
_RATE_HINT = "expected bytes per second, or e.g. 200kbit, 1Mbit, 50KB"


class UnitError(ValueError):
    """A value that is not a valid duration, size or rate; the message says what is expected."""


def shown(value: object, limit: int = 60) -> str:
    """`repr(value)`, cut short: a message must stay readable whatever was written."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return text[: limit - 4] + "...'" if isinstance(value, str) else text[: limit - 3] + "..."


def parse_duration(value: object) -> float:
    """`500ms`, `10s`, `5m`, `1h` or compounds such as `1m30s` → seconds (> 0)."""
    if not isinstance(value, str) or not value:
        raise UnitError(f"invalid duration {shown(value)}: {_DURATION_HINT}")
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(value):
        raise UnitError(f"invalid duration {shown(value)}: {_DURATION_HINT}")
    if total <= 0:
        raise UnitError(f"invalid duration {shown(value)}: must be greater than zero")
    if total > MAX_DURATION:
        raise UnitError(f"invalid duration {shown(value)}: must be at most 365 days")
    return total


def parse_size(value: object) -> int:
    """`65536`, `64KiB`, `1MiB` → bytes (> 0); suffixes are binary."""
    if isinstance(value, bool):
        raise UnitError(f"invalid size {shown(value)}: {_SIZE_HINT}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise UnitError(f"invalid size {shown(value)}: {_SIZE_HINT}")
        size = int(match.group(1)) * _SIZE_FACTOR[match.group(2)]
    if size <= 0:
        raise UnitError(f"invalid size {shown(value)}: must be greater than zero")
    if size > MAX_SIZE:
        raise UnitError(f"invalid size {shown(value)}: must be at most 1TiB")
    return size


def parse_rate(value: object) -> float:
    """Bytes per second as a number, or `200kbit`, `1Mbit`, `50KB` … (decimal) → bytes/s."""
    if isinstance(value, bool):
        raise UnitError(f"invalid rate {shown(value)}: {_RATE_HINT}")
    if isinstance(value, int | float):
        rate = float(value)
    else:
        match = _RATE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise UnitError(f"invalid rate {shown(value)}: {_RATE_HINT}")
        rate = float(match.group(1)) * _RATE_BYTES_PER_SECOND[match.group(2)]
    if not math.isfinite(rate):
        raise UnitError(f"invalid rate {shown(value)}: {_RATE_HINT}")
    if rate <= 0:
        raise UnitError(f"invalid rate {shown(value)}: must be greater than zero")
    if rate > MAX_RATE:
        raise UnitError(f"invalid rate {shown(value)}: must be at most 1TB per second")
    return rate


def format_duration(seconds: float) -> str:
    """Inverse of parse_duration for messages and the status page: `500ms`, `10s`, `1m30s`."""
    if seconds < 1:
        return f"{round(seconds * 1000, 3):g}ms"
    hours, rest = divmod(round(seconds, 3), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{int(hours)}h"] if hours else []
    if minutes:
        parts.append(f"{int(minutes)}m")
    if secs:
        parts.append(f"{round(secs, 3):g}s")
    return "".join(parts)
