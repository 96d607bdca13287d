"""What one run of a check returns: a verdict plus the evidence behind it. Probes build these;
the metrics store, the status API, `/probe` and `--once` read them."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from exporter.verdicts import Verdict

# Phase names exported in reachability_check_phase_seconds{phase=...}.
PHASE_RESOLVE = "resolve"
PHASE_CONNECT = "connect"
PHASE_TLS = "tls"
PHASE_FIRST_BYTE = "first_byte"
PHASE_TRANSFER = "transfer"


@dataclasses.dataclass(slots=True)
class ResolverAnswer:
    """One resolver's answer inside a dns check."""

    resolver: str
    verdict: Verdict
    # A list while the probe builds it; a tuple once the store keeps it (ResultStore.record).
    addresses: Sequence[str] = dataclasses.field(default_factory=list)
    rcode: str = ""
    duration: float = 0.0
    detail: str = ""
    is_control: bool = False


# slots: the store keeps the last Result of every check (10,000 of them at scale), and a
# slotted instance is a third of the size of one with a __dict__.
@dataclasses.dataclass(slots=True)
class Result:
    """Outcome of one run. `detail` is human-readable evidence (error text, what matched);
    it never becomes a label."""

    verdict: Verdict
    detail: str = ""
    duration: float = 0.0
    phases: dict[str, float] = dataclasses.field(default_factory=dict)
    # Lists while the probe builds them; tuples once the store keeps the result (keep()).
    addresses: Sequence[str] = dataclasses.field(default_factory=list)  # candidates tried
    address: str | None = None  # the address that answered, if any
    resolvers: Sequence[ResolverAnswer] = dataclasses.field(default_factory=list)
    status_code: int | None = None
    final_url: str | None = None
    cert_expiry: float | None = None  # leaf notAfter, unix seconds
    bytes_received: int | None = None
    rate: float | None = None  # bytes per second
    bytes_sent: int | None = None  # upload: body bytes the peer acknowledged
    # TCP segments sent and received by a transfer's connection at its end (TCP_INFO): a
    # cut-off after a fixed number of packets shows here, one after a fixed size in bytes.
    segments_sent: int | None = None
    segments_received: int | None = None
    # tls `fingerprints`: browser shape -> whether it got a ServerHello in this run.
    fingerprints: dict[str, bool] = dataclasses.field(default_factory=dict)
    rtt: float | None = None  # UDP round trip
    started: float = dataclasses.field(default_factory=time.time)
    finished: float = 0.0

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready evidence for /api/v1/status and `--once --output=json`."""
        out = dataclasses.asdict(self)
        out["verdict"] = str(self.verdict)
        out["addresses"] = list(self.addresses)
        out["resolvers"] = [
            {**dataclasses.asdict(r), "verdict": str(r.verdict), "addresses": list(r.addresses)}
            for r in self.resolvers
        ]
        return {k: v for k, v in out.items() if v not in (None, [], {}, "")}

    def keep(self) -> None:
        """Its lists made tuples, for the store to keep it: the store keeps every check's
        last result, and a full garbage collection (every 30 s, on the event loop) walks
        every list, where it stops tracking a tuple of strings. At 10,000 checks these lists
        were 22,500 of the 62,000 objects it walked."""
        self.addresses = tuple(self.addresses)
        for answer in self.resolvers:
            answer.addresses = tuple(answer.addresses)
        self.resolvers = tuple(self.resolvers)


class Phases:
    """Accumulates per-phase durations; a phase entered twice (redirects) adds up, as in
    blackbox_exporter's probe_http_duration_seconds."""

    def __init__(self) -> None:
        self.durations: dict[str, float] = {}

    def add(self, phase: str, seconds: float) -> None:
        self.durations[phase] = self.durations.get(phase, 0.0) + seconds
