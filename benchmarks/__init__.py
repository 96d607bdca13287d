"""The benchmarks: each runs the installed exporter (or the prober) beside the peer it
competes with; see the README of the repository."""
