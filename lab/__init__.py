"""The censorship lab: network namespaces in which a client reaches real servers through a
censor that applies the blocking methods seen in Russia (DNS removal, IP and SNI blocking,
the 16 KB freeze, throttling, UDP drops, whitelist mode), so that the exporter's verdicts
can be proved against them. See README.md ("The censorship lab") and `python -m lab --help`."""
