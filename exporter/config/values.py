"""The configuration's value parsers: durations, sizes and rates (the units the README
gives), names, hosts, ports, URLs, targets, CIDRs and status codes. Pure functions that raise
ValueError with the message to show, or return None where the caller words the message."""

from __future__ import annotations

import enum
import ipaddress
import math
import re
import urllib.parse
from typing import Any

from exporter.config.model import IPNetwork

NAME_PATTERN = "[a-z0-9][a-z0-9_-]*"
NAME_RE = re.compile(NAME_PATTERN)
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"(?=[^\n]{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?")

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


def type_name(value: Any) -> str:
    """How a message names what was written instead: `a list`, `a number`, `nothing`."""
    if value is None:
        return "nothing"
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    names |= {int: "a number", float: "a number"}
    return names.get(type(value), f"a {type(value).__name__}")


def urlsplit(value: Any) -> urllib.parse.SplitResult | None:
    """`value` split as a URL, or None. Whitespace and control characters are refused: the
    URL parser would silently drop some of them."""
    if not isinstance(value, str) or any(ch.isspace() or not ch.isprintable() for ch in value):
        return None
    try:
        return urllib.parse.urlsplit(value)
    except ValueError:
        return None


def url_port(parsed: urllib.parse.SplitResult, default: int) -> int | None:
    """The URL's port, `default` when it gives none, None when it is not 1-65535."""
    try:
        port = parsed.port
    except ValueError:
        return None
    if port is None:
        return default
    return port if 1 <= port <= 65535 else None


def port_number(text: str) -> int | None:
    if not re.fullmatch(r"[0-9]{1,5}", text):
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


def split_host_port(target: str) -> tuple[str, str | None]:
    if target.startswith("["):
        host, sep, rest = target[1:].partition("]")
        if not sep or ":" not in host:  # brackets are for IPv6 literals only
            return "", None
        if not rest:
            return host, None
        return (host, rest[1:]) if rest.startswith(":") else ("", None)
    if target.count(":") == 1:
        host, _, port = target.partition(":")
        return host, port
    return target, None  # a bare name, or a bare IPv6 literal


def host_name(text: str, *, ip_ok: bool = True) -> str | None:
    """A valid host: an IP literal (normalised; only with `ip_ok`) or a DNS name, non-ASCII
    names as their IDNA A-label; None if it is neither."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        return str(address) if ip_ok else None
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if not HOSTNAME_RE.fullmatch(text):
        return None
    # A name whose last label is all digits is a mistyped IP address (RFC 3696 2).
    if text.rstrip(".").rsplit(".", 1)[-1].isdigit():
        return None
    return text


class TargetForm(enum.Enum):
    """How a kind's `target` is written."""

    NAME = "name"  # a domain name: what dns asks for
    HOST_PORT = "host:port"  # the port may have a default
    URL = "url"  # http:// or https://


def parse_target(form: TargetForm, target: str, default_port: int | None) -> tuple[str, int]:
    """The host to resolve or connect to and its port (0 for a name) from a non-empty
    `target`; `default_port` (host:port targets only) stands in for a port left out."""
    if form is TargetForm.NAME:
        host = host_name(target, ip_ok=False)
        if host is None:
            raise ValueError(f"invalid domain name {shown(target)}")
        return host.rstrip("."), 0
    if form is TargetForm.URL:
        return _url_target(target)
    return _host_port_target(target, default_port)


def _url_target(target: str) -> tuple[str, int]:
    parsed = urlsplit(target)
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"invalid URL {shown(target)}: expected http:// or https://host/...")
    host = host_name(parsed.hostname)
    if host is None:
        raise ValueError(f"invalid URL {shown(target)}: bad host {shown(parsed.hostname)}")
    port = url_port(parsed, 443 if parsed.scheme == "https" else 80)
    if port is None:
        raise ValueError(f"invalid URL {shown(target)}: port must be 1-65535")
    return host, port


def _host_port_target(target: str, default_port: int | None) -> tuple[str, int]:
    host_text, port_text = split_host_port(target)
    host = host_name(host_text) if host_text else None
    if host is None:
        example = "host:port" if default_port is None else "host or host:port"
        problem = f"bad host {shown(host_text)}" if host_text else f"expected {example}"
        raise ValueError(f"invalid target {shown(target)}: {problem}")
    if port_text is None:
        if default_port is None:
            raise ValueError(f"invalid target {shown(target)}: a port is required (host:port)")
        return host, default_port
    port = port_number(port_text)
    if port is None:
        raise ValueError(f"invalid target {shown(target)}: port must be 1-65535")
    return host, port


def parse_cidr(value: Any) -> IPNetwork:
    hint = "expected a network such as 10.0.0.0/8 or fc00::/7"
    if not isinstance(value, str):
        raise ValueError(f"invalid CIDR {shown(value)}: {hint}")
    try:
        return ipaddress.ip_network(value)
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"invalid CIDR {shown(value)}: {hint}") from None
    raise ValueError(f"invalid CIDR {shown(value)}: host bits set (the network is {network})")


def parse_status(item: Any) -> tuple[int, int] | None:
    """`200` or `"200-399"` as an inclusive range of codes between 100 and 599, else None."""
    if isinstance(item, int) and not isinstance(item, bool):
        low = high = item
    elif isinstance(item, str) and re.fullmatch(r"[0-9]{3}(-[0-9]{3})?", item):
        low_text, _, high_text = item.partition("-")
        low, high = int(low_text), int(high_text or low_text)
    else:
        return None
    if not 100 <= low <= high <= 599:
        return None
    return low, high
