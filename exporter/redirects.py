"""What the http and transfer probes share about a response chain: matching blockpage
patterns, and deciding whether a redirect may be followed and where to."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

from exporter.config import HOSTNAME_RE, MAX_REDIRECTS

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class RedirectRefused(Exception):
    """A redirect that is not followed: too many, another scheme, or a broken target. The
    message is the evidence (the verdict is http_error)."""


def match_blockpage(patterns: tuple[re.Pattern[str], ...], text: str) -> str | None:
    """The first pattern found in `text`, quoted for the evidence, or None."""
    for pattern in patterns:
        if pattern.search(text):
            return repr(pattern.pattern)
    return None


def status_expected(status: int, expected: tuple[tuple[int, int], ...]) -> bool:
    return any(low <= status <= high for low, high in expected)


def next_url(url: str, location: str, hops: int) -> str:
    """The absolute URL of redirect number `hops` (1-based) from `url`; raises
    RedirectRefused when it must not be followed."""
    target = urllib.parse.urljoin(url, location.strip())
    parts = urllib.parse.urlsplit(target)
    if hops > MAX_REDIRECTS:
        raise RedirectRefused(f"more than {MAX_REDIRECTS} redirects (next: {target})")
    if parts.scheme not in ("http", "https"):
        raise RedirectRefused(f"redirect to unsupported scheme {parts.scheme!r}: {target}")
    if not _valid_host(parts.hostname) or not _valid_port(parts):
        # The server's word, not the configuration's: never hand it to a resolver as is.
        raise RedirectRefused(f"redirect to an invalid host or port: {target}")
    return target


def _valid_host(host: str | None) -> bool:
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return HOSTNAME_RE.fullmatch(host) is not None
    return True


def _valid_port(parts: urllib.parse.SplitResult) -> bool:
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    return True
