"""reachability_exporter: probes internet services from one vantage point and tells, per
layer, whether and how they are blocked, for Prometheus to scrape."""

import dns._features

__version__ = "0.1.0"

# dnspython imports aioquic (and trio, when installed) for DNS over QUIC as soon as
# dns.resolver is imported; no resolver here speaks DoQ, and they cost ~10 MB of every
# process. Switched off here, before any module of the package imports dnspython.
dns._features.force("doq", False)
dns._features.force("trio", False)
