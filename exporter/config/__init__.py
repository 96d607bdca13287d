"""The configuration package; `from exporter.config import X` keeps working for every name
the single-module loader exported."""

from __future__ import annotations

from exporter.config.loader import *  # noqa: F403
from exporter.config.loader import (  # noqa: F401
    IPNetwork,
    Options,
    Path,
)
