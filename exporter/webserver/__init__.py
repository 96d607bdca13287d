"""The HTTP server of the README's endpoints, on the exporter's event loop with bounded
work per client; see server.py for the design."""

from __future__ import annotations

from exporter.webserver.server import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_TELEMETRY_PATH,
    WebServer,
    parse_listen_address,
)

__all__ = ["DEFAULT_MAX_CONNECTIONS", "DEFAULT_TELEMETRY_PATH", "WebServer", "parse_listen_address"]
