"""HTTP basic auth against bcrypt hashes, as the exporter-toolkit does it, made safe to expose:
the same work for unknown users as for known ones, bcrypt bounded to one check at a time,
and recent successes remembered so that Prometheus's scrapes cost no bcrypt at all."""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import logging
import re
import secrets
import threading

log = logging.getLogger(__name__)

# bcrypt uses the first 72 bytes of a password. Go's bcrypt refuses longer ones only when
# *generating* a hash; comparing, it ignores the bytes past 72 (Blowfish's key schedule takes
# 72 bytes), so an exporter-toolkit exporter accepts such a password by its first 72 bytes.
# Python's bcrypt raises instead, which turned every long password into a 401.
BCRYPT_MAX_PASSWORD = 72
# bcrypt costs ~70 ms of a core at cost 10, by design. Fifty clients with wrong passwords
# used both cores for 16 s: one check at a time leaves the other core to the probes.
BCRYPT_SLOTS = 1
# A check waits at most this long for the slot, then fails (401): a flood of wrong passwords
# makes other new logins wait, never pile up without bound.
BCRYPT_WAIT = 2.0
# Verified (user, password) pairs remembered; Prometheus sends the same pair every scrape.
CACHE_SIZE = 256

# What Go's bcrypt.Cost() accepts: $2$, $2a$, $2b$, $2x$, $2y$, a two-digit cost in 4..31, and
# 53 characters of bcrypt's base64 (the salt and the hash).
_HASH = re.compile(rb"\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}")
MIN_COST, MAX_COST = 4, 31
_DUMMY_PASSWORD = b"no such user: a fixed password to spend the same time on"

_slots = threading.BoundedSemaphore(BCRYPT_SLOTS)
_dummies: dict[int, bytes] = {}
_dummies_lock = threading.Lock()


def hash_problem(value: str) -> str | None:
    """Why `value` is not a bcrypt hash this exporter (and Go's bcrypt) can check, or None."""
    match = _HASH.fullmatch(value.encode("utf-8", "replace"))
    if match is None:
        return "must be a bcrypt hash ($2y$10$ followed by 53 characters)"
    cost = int(match.group(1))
    if not MIN_COST <= cost <= MAX_COST:
        return f"bcrypt cost {cost} is outside {MIN_COST}..{MAX_COST}"
    return None


def cost_of(hashed: bytes) -> int:
    match = _HASH.fullmatch(hashed)
    return int(match.group(1)) if match else 10


class BasicAuth:
    """The users of one web configuration. Thread-safe; `check` blocks for up to a bcrypt
    check plus BCRYPT_WAIT, so callers run it off the event loop."""

    def __init__(self, users: dict[str, bytes]) -> None:
        self.users = {user.encode(): _normalise(hashed) for user, hashed in users.items()}
        # Unknown users are checked against a hash of the highest cost in use, so that they
        # take at least as long as any real one.
        self._dummy_cost = max((cost_of(h) for h in self.users.values()), default=10)
        # Keyed, so that the cache is no fast oracle for passwords should memory leak.
        self._key = secrets.token_bytes(32)
        self._verified: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def check(self, header: str | None) -> bool:
        """True when the Authorization header names a user with the right password."""
        credentials = _credentials(header)
        if credentials is None:
            return False
        user, password = credentials
        # Length-prefixed: a separator byte could also occur inside a name or a password.
        pair = len(user).to_bytes(4, "big") + user + password
        digest = hmac.new(self._key, pair, hashlib.sha256).digest()
        with self._lock:
            if digest in self._verified:
                self._verified.move_to_end(digest)
                return True
        hashed = self.users.get(user)
        ok = self._bcrypt(password, hashed if hashed is not None else _dummy(self._dummy_cost))
        if not (ok and hashed is not None):
            return False
        with self._lock:
            self._verified[digest] = None
            while len(self._verified) > CACHE_SIZE:
                self._verified.popitem(last=False)
        return True

    def _bcrypt(self, password: bytes, hashed: bytes) -> bool:
        if not _slots.acquire(timeout=BCRYPT_WAIT):
            log.debug("basic auth: no bcrypt slot within %ss, refusing", BCRYPT_WAIT)
            return False
        try:
            import bcrypt  # imported only where basic auth is configured: ~2 MB

            return bcrypt.checkpw(password[:BCRYPT_MAX_PASSWORD], hashed)
        except ValueError:
            return False
        finally:
            _slots.release()


def _credentials(header: str | None) -> tuple[bytes, bytes] | None:
    """(user, password) as bytes from a Basic Authorization header: Go compares bytes, so a
    password need not be UTF-8."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


def _normalise(hashed: bytes) -> bytes:
    # "$2$", the first bcrypt, is what "$2a$" computes for the passwords anyone types (ASCII);
    # Python's bcrypt refuses the prefix, Go's accepts it.
    return b"$2a$" + hashed[3:] if hashed.startswith(b"$2$") else hashed


def _dummy(cost: int) -> bytes:
    """A hash of `cost`, made once per cost (it takes as long as a check)."""
    with _dummies_lock:
        if cost not in _dummies:
            import bcrypt

            _dummies[cost] = bcrypt.hashpw(_DUMMY_PASSWORD, bcrypt.gensalt(rounds=cost))
        return _dummies[cost]
