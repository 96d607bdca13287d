"""File descriptors: the probes' share is reserved before the web side gets any, so that no
number of web clients can make a probe fail for want of a socket (which would read as a
target failure). At start the soft RLIMIT_NOFILE is raised to what the design needs; where
the hard limit forbids it, the web side gets fewer connections, never the probes fewer
sockets."""

from __future__ import annotations

import logging
import resource

# Sockets one probe can hold at once: a dns check asks its resolvers and the control
# together (three or four sockets); every other kind holds one at a time.
FDS_PER_PROBE = 4
# The process itself: stdio, the event loop's selector and self-pipe, log and configuration
# files, the CA bundle being read (a running exporter holds about 12; twice that, rounded).
FDS_BASE = 32

log = logging.getLogger(__name__)


def probe_reserve(concurrency: int) -> int:
    return FDS_BASE + concurrency * FDS_PER_PROBE


def needed(max_connections: int, concurrency: int, listeners: int = 1) -> int:
    """Descriptors the exporter can have open at once with these flags."""
    return probe_reserve(concurrency) + listeners + max_connections


def raise_soft_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE to `wanted` (never above the hard limit, never down);
    return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning(
                "cannot raise the open files limit soft=%d wanted=%d: %s", soft, wanted, exc
            )
    return soft


def web_connections(max_connections: int, concurrency: int, listeners: int = 1) -> int:
    """The web connections that fit beside the probes' reserve: `max_connections` when the
    limit allows it, else fewer (at least one), with a warning naming the fix."""
    wanted = needed(max_connections, concurrency, listeners)
    soft = raise_soft_limit(wanted)
    room = soft - probe_reserve(concurrency) - listeners
    if room >= max_connections:
        return max_connections
    fitting = max(1, room)
    log.warning(
        "open files limit %d is below the %d needed: serving at most %d web connections "
        "instead of --web.max-connections=%d (raise LimitNOFILE or ulimit -n)",
        soft,
        wanted,
        fitting,
        max_connections,
    )
    return fitting
