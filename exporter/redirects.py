"""What the http and transfer probes share about a response chain, as pure functions:
matching blockpage patterns, a body as text for them, and deciding whether a redirect may be
followed and where to."""

from __future__ import annotations

import codecs
import contextlib
import ipaddress
import re
import urllib.parse
import zlib
from collections.abc import Iterable

from exporter.config import HOSTNAME_RE, MAX_REDIRECTS, IPNetwork, StatusRanges
from exporter.errors import Blockpage, RedirectRefused

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# For a body whose declared charset is not one a page can be in: a name Python does not
# know, or one of its codecs that are not charsets: they raise whatever the error handler
# (undefined), refuse "replace" (idna) or turn ASCII into other text (punycode, escapes).
_TEXT_FALLBACK = "utf-8"
_NOT_CHARSETS = frozenset({"idna", "punycode", "undefined", "raw-unicode-escape", "unicode-escape"})


def match_blockpage(patterns: tuple[re.Pattern[str], ...], text: str) -> str | None:
    """The first pattern found in `text`, quoted for the evidence, or None."""
    for pattern in patterns:
        if pattern.search(text):
            return repr(pattern.pattern)
    return None


def status_expected(status: int, expected: StatusRanges | None) -> bool:
    """Whether `status` lies in one of the ranges; with none given (an upload that does not
    ask for a status), any status counts."""
    return expected is None or any(low <= status <= high for low, high in expected)


def next_url(url: str, location: str, hops: int, bogons: Iterable[IPNetwork] = ()) -> str:
    """The absolute URL of redirect number `hops` (1-based) from `url`, without userinfo
    (the server's `user:pw@` is never sent onward). Raises RedirectRefused when it must not
    be followed, and Blockpage for an IP literal inside `bogons`: that is how many ISPs
    serve their local blockpage, and following it would probe our own network."""
    target = urllib.parse.urljoin(url, location.strip())
    parts = urllib.parse.urlsplit(target)
    if hops > MAX_REDIRECTS:
        raise RedirectRefused(f"more than {MAX_REDIRECTS} redirects (next: {target})")
    if parts.scheme not in ("http", "https"):
        raise RedirectRefused(f"redirect to unsupported scheme {parts.scheme!r}: {target}")
    if not _valid_host(parts.hostname) or not _valid_port(parts):
        # The server's word, not the configuration's: never hand it to a resolver as is.
        raise RedirectRefused(f"redirect to an invalid host or port: {target}")
    address = _literal(parts.hostname or "")
    if address is not None and any(address in network for network in bogons):
        raise Blockpage(f"redirect to {target}, an address inside bogons (a local blockpage)")
    if parts.username is not None or parts.password is not None:
        netloc = parts.netloc.rpartition("@")[2]
        target = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return target


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The host as an address when it is one; an IPv4-mapped IPv6 address as the IPv4
    address it carries (`[::ffff:127.0.0.1]` is 127.0.0.1 on the wire)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


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


def body_text(body: bytes, content_encoding: str, charset: str | None, limit: int) -> str:
    """The body as text for the patterns: decompressed when the server compressed it anyway
    (we asked for identity), at most `limit` bytes of it so that a small bomb stays small; in
    its declared charset when that is a real one, else UTF-8. Never raises: a made-up
    charset must not keep a blockpage from being matched."""
    if content_encoding.strip().lower() in ("gzip", "x-gzip", "deflate"):
        # Not what it claims: match the bytes as sent. wbits 47: zlib or gzip framing.
        with contextlib.suppress(zlib.error):
            body = zlib.decompressobj(47).decompress(body, limit)
    if charset:
        # bytes.decode refuses non-text codecs (hex, rot13) with LookupError itself.
        with contextlib.suppress(LookupError, UnicodeError, ValueError):
            if codecs.lookup(charset).name not in _NOT_CHARSETS:
                return body.decode(charset, errors="replace")
    return body.decode(_TEXT_FALLBACK, errors="replace")
