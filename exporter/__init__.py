"""reachability_exporter: probes internet services from one vantage point and tells, per
layer, whether and how they are blocked, for Prometheus to scrape."""

__version__ = "0.1.0"
