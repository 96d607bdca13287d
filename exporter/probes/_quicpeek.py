"""The one place that reads aioquic's private state, for the versions pyproject.toml pins.

aioquic knows at once that a connection was closed (by the peer, or by our own certificate
check), but emits the public ConnectionTerminated event only after the draining period of
three probe timeouts: a probe waiting for it would report a refusal as a timeout. The close
is kept in `QuicConnection._close_event` until then; `early_close` reads it, and
tests/test_quic_probe.py checks that it still does on the installed aioquic."""

from __future__ import annotations

from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated


def early_close(connection: QuicConnection) -> ConnectionTerminated | None:
    """How the connection was closed, as soon as aioquic knows it; None while it is open."""
    event = getattr(connection, "_close_event", None)
    return event if isinstance(event, ConnectionTerminated) else None
