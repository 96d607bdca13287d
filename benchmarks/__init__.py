"""The benchmarks: each runs the installed exporter (or the prober) beside the peer it
competes with; see the README of the repository."""

from __future__ import annotations

import sys

from peers import child

# TEMPORARY alias: `benchmarks.peers` moved to `peers.child`; branches written before the move
# still import it. Delete this once every branch has landed and imports `peers.child`.
sys.modules[f"{__name__}.peers"] = child
peers = child
