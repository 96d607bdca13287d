"""TEMPORARY alias layer: the test peers moved to the top-level `peers/` package. Branches
written before the move still import `tests.support.<name>`; each such name is the very
module object of `peers.<name>` (not a copy), so that, for instance, there is one session CA
whichever name a test imports certs by. Delete this file once every branch has landed and its
imports are rewritten to `peers.<name>`."""

from __future__ import annotations

import sys

from peers import (
    certs,
    dnsserver,
    exporterproc,
    listeners,
    prometheus_harness,
    quicserver,
    stunserver,
    weakpeers,
    webservers,
)

for _module in (
    certs,
    dnsserver,
    exporterproc,
    listeners,
    prometheus_harness,
    quicserver,
    stunserver,
    weakpeers,
    webservers,
):
    sys.modules[f"{__name__}.{_module.__name__.rpartition('.')[2]}"] = _module

__all__ = [
    "certs",
    "dnsserver",
    "exporterproc",
    "listeners",
    "prometheus_harness",
    "quicserver",
    "stunserver",
    "weakpeers",
    "webservers",
]
