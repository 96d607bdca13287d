"""The peers a probe meets, for the tests, the lab and the benchmarks alike: DNS, HTTP(S),
TLS, proxy, STUN and QUIC servers on loopback or in the lab's namespaces, throwaway
certificates, and launchers for the real exporter and Prometheus. Not part of the installed
exporter, and exporter/ never imports it."""

from __future__ import annotations

from pathlib import Path

# The checkout the peers run from: the exporter is started in it, and deploy/, dashboards/
# and config.yaml are read from it.
REPO = Path(__file__).resolve().parents[1]
