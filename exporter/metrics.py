"""The result store and the Prometheus collector that reads it.

Probes write results into the store as they finish; a scrape takes a snapshot under a lock
and builds every metric family from it (client_python's custom-collector pattern), so that
/metrics never waits for a probe and a removed check simply stops being yielded."""

from __future__ import annotations

import bisect
import collections
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.config import Check, Config, Service, TransferOptions
from exporter.kinds import REGISTRY, Evidence
from exporter.result import Result
from exporter.vantage import vantage_state
from exporter.verdicts import VantageState, Verdict

NAMESPACE = "reachability"

# Latency of successful runs: from a nearby resolver (ms) to a slow transfer (tens of s).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0)


class Histogram:
    """A cumulative-on-export bucket counter (the store's own, so it can be copied into a
    snapshot and dropped with its check)."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last slot is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def copy(self) -> Histogram:
        other = Histogram(self.buckets)
        other.counts = list(self.counts)
        other.total = self.total
        return other

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


@dataclasses.dataclass
class CheckState:
    check: Check
    result: Result | None = None
    since: float = 0.0  # when the verdict last changed
    last_success: float | None = None  # end of the last ok run
    failing_runs: int = 0  # non-ok runs in a row
    runs: int = 0
    failures: collections.Counter[Verdict] = dataclasses.field(default_factory=collections.Counter)
    latency: Histogram = dataclasses.field(default_factory=lambda: Histogram(LATENCY_BUCKETS))

    def copy(self) -> CheckState:
        return dataclasses.replace(
            self, failures=collections.Counter(self.failures), latency=self.latency.copy()
        )

    @property
    def verdict(self) -> Verdict | None:
        return self.result.verdict if self.result else None


@dataclasses.dataclass
class Snapshot:
    """A consistent copy of the store, taken under its lock and read without one."""

    services: list[Service]
    states: dict[tuple[str, str], CheckState]
    lag: Histogram
    reload_successful: bool
    reload_success_timestamp: float
    ready: bool

    def service_states(self, service: Service) -> list[CheckState]:
        return [self.states[c.key] for c in service.checks if c.key in self.states]

    def service_result(self, service: Service) -> tuple[bool, Verdict] | None:
        """(up, verdict) once every check of the service has run, else None."""
        states = self.service_states(service)
        if len(states) != len(service.checks) or any(s.result is None for s in states):
            return None
        for state in states:
            if state.verdict is not Verdict.OK:
                return False, state.verdict or Verdict.ERROR
        return True, Verdict.OK

    def service_since(self, service: Service) -> float | None:
        """When the service's verdict last changed: the newest change among its checks."""
        states = self.service_states(service)
        return max((s.since for s in states if s.result), default=None)

    def vantage(self) -> VantageState:
        controls = []
        for service in self.services:
            if service.role == "control":
                result = self.service_result(service)
                controls.append((service.scope, None if result is None else result[0]))
        return vantage_state(controls)


# Called after record() when a check's verdict changed (its first result included, with None
# as the previous verdict, or the restored one), and on a restored check's first run even if
# it did not change (previous is then the new verdict): the evidence journal, the change log,
# the verdict history and the vantage state's since.
VerdictObserver = Callable[[Check, Verdict | None, Result], None]


class ResultStore:
    """Latest results per check, written from the event loop, read from web threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # -- hooks for the evidence journal (exporter/journal.py) --
        self.observer: VerdictObserver | None = None
        # (service, check) -> (verdict, since) restored at start, used up by the first run.
        self._restored: dict[tuple[str, str], tuple[Verdict, float]] = {}
        self._services: list[Service] = []
        self._states: dict[tuple[str, str], CheckState] = {}
        self._lag = Histogram(LAG_BUCKETS)
        self._reload_successful = False
        self._reload_success_timestamp = 0.0
        self._ready = False

    def apply_config(self, config: Config) -> None:
        """Keep the state of checks that remain (their "since" survives a reload), start
        new ones empty, forget removed ones so their series vanish."""
        with self._lock:
            states = {}
            for check in config.checks():
                state = self._states.get(check.key)
                if state is None or state.check.kind != check.kind:
                    state = CheckState(check)
                state.check = check
                states[check.key] = state
            self._states = states
            self._services = list(config.services.values())
            self.mark_reload(True)

    def mark_reload(self, successful: bool) -> None:
        self._reload_successful = successful
        if successful:
            self._reload_success_timestamp = time.time()

    def set_reload_failed(self) -> None:
        with self._lock:
            self.mark_reload(False)

    def set_ready(self) -> None:
        with self._lock:
            self._ready = True

    def restore(self, key: tuple[str, str], verdict: Verdict, since: float) -> None:
        """A check's verdict and "since" from before a restart: a first run that gives the
        same verdict keeps that "since" (blocked since last week, not since the restart)."""
        with self._lock:
            self._restored[key] = (verdict, since)

    def record(self, check: Check, result: Result) -> None:
        with self._lock:
            state = self._states.get(check.key)
            if state is None or state.check != check:
                return  # removed or changed by a reload while it ran
            previous = state.verdict
            restored = state.result is None and check.key in self._restored
            if restored:
                previous, state.since = self._restored.pop(check.key)
            changed = previous is not result.verdict
            notify = changed or restored
            if changed:
                state.since = result.finished
            state.result = result
            state.runs += 1
            if result.ok:
                state.latency.observe(result.duration)
                state.last_success = result.finished
                state.failing_runs = 0
            else:
                state.failures[result.verdict] += 1
                state.failing_runs += 1
        # Outside the lock: the observer may take a snapshot.
        if notify and self.observer is not None:
            self.observer(check, previous, result)

    def observe_lag(self, seconds: float) -> None:
        with self._lock:
            self._lag.observe(max(seconds, 0.0))

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                services=list(self._services),
                states={key: state.copy() for key, state in self._states.items()},
                lag=self._lag.copy(),
                reload_successful=self._reload_successful,
                reload_success_timestamp=self._reload_success_timestamp,
                ready=self._ready,
            )


def _name(suffix: str) -> str:
    return f"{NAMESPACE}_{suffix}"


CHECK_LABELS = ["service", "check", "kind"]


class ReachabilityCollector(Collector):
    """Builds every reachability_* family from a snapshot at scrape time."""

    def __init__(self, store: ResultStore) -> None:
        self.store = store

    def collect(self) -> Iterable[Metric]:
        snap = self.store.snapshot()
        yield from _check_families(snap)
        yield from _fingerprint_families(snap)
        yield from _transfer_direction_families(snap)
        yield from _service_families(snap)
        yield from _exporter_families(snap)


def _gauge(suffix: str, doc: str, labels: list[str], unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(_name(suffix), doc, labels=labels, unit=unit)


def _check_families(snap: Snapshot) -> Iterator[Metric]:
    check_labels = CHECK_LABELS
    success = _gauge("check_success", "1 when the last run was ok, else 0.", check_labels)
    verdict = _gauge(
        "check_verdict", "The current verdict of the check (value 1).", [*check_labels, "verdict"]
    )
    duration = _gauge("check_duration_seconds", "Duration of the last run.", check_labels)
    phase = _gauge(
        "check_phase_seconds", "Duration of the last run by phase.", [*check_labels, "phase"]
    )
    latency = HistogramMetricFamily(
        _name("check_latency_seconds"), "Durations of successful runs.", labels=check_labels
    )
    runs = CounterMetricFamily(_name("check_runs"), "Runs of the check.", labels=check_labels)
    failures = CounterMetricFamily(
        _name("check_failures"), "Failed runs by verdict.", labels=[*check_labels, "verdict"]
    )
    last_run = _gauge(
        "check_last_run_timestamp_seconds", "End of the last run (unix time).", check_labels
    )
    last_change = _gauge(
        "check_last_change_timestamp_seconds",
        "When the verdict last changed (unix time): blocked since.",
        check_labels,
    )
    last_success = _gauge(
        "check_last_success_timestamp_seconds",
        "End of the last ok run (unix time): last seen working.",
        check_labels,
    )
    failing_runs = _gauge(
        "check_consecutive_failures",
        "Runs in a row that were not ok (0 after an ok run): one bad run is not an outage.",
        check_labels,
    )
    interval = _gauge("check_interval_seconds", "Configured interval between runs.", check_labels)
    info = _gauge("check_info", "The check's target (value 1).", [*check_labels, "target"])
    dns_answers = _gauge(
        "dns_answers", "Addresses in the last answer, per resolver.", [*check_labels, "resolver"]
    )
    dns_verdict = _gauge(
        "dns_resolver_verdict",
        "Each resolver's own verdict (value 1).",
        [*check_labels, "resolver", "verdict"],
    )
    cert_expiry = _gauge(
        "tls_cert_expiry_timestamp_seconds", "Leaf certificate notAfter (unix time).", check_labels
    )
    status_code = _gauge(
        "http_status_code", "Final HTTP status code of the last run (0: none).", check_labels
    )
    transfer_bytes = _gauge("transfer_bytes", "Bytes received in the last transfer.", check_labels)
    transfer_rate = _gauge(
        "transfer_rate_bytes_per_second", "Goodput of the last transfer.", check_labels
    )
    for state in snap.states.values():
        result = state.result
        if result is None:
            continue
        check = state.check
        kind = REGISTRY[check.kind]
        labels = [check.service, check.name, check.kind]
        success.add_metric(labels, 1.0 if result.ok else 0.0)
        verdict.add_metric([*labels, str(result.verdict)], 1.0)
        duration.add_metric(labels, result.duration)
        # Every phase of the kind, from the first run on: a run that failed early reads as
        # 0 in the later phases rather than as a missing series.
        for name in kind.phases:
            phase.add_metric([*labels, name], result.phases.get(name, 0.0))
        latency.add_metric(labels, state.latency.cumulative(), state.latency.total)
        runs.add_metric(labels, float(state.runs))
        for failed, count in sorted(state.failures.items()):
            failures.add_metric([*labels, str(failed)], float(count))
        last_run.add_metric(labels, result.finished)
        last_change.add_metric(labels, state.since)
        if state.last_success is not None:
            last_success.add_metric(labels, state.last_success)
        failing_runs.add_metric(labels, float(state.failing_runs))
        interval.add_metric(labels, check.interval)
        info.add_metric([*labels, check.target], 1.0)
        for answer in result.resolvers if Evidence.DNS_ANSWERS in kind.evidence else ():
            dns_answers.add_metric([*labels, answer.resolver], float(len(answer.addresses)))
            dns_verdict.add_metric([*labels, answer.resolver, str(answer.verdict)], 1.0)
        if result.cert_expiry is not None and Evidence.CERT_EXPIRY in kind.evidence:
            cert_expiry.add_metric(labels, result.cert_expiry)
        if Evidence.STATUS_CODE in kind.evidence:
            status_code.add_metric(labels, float(result.status_code or 0))
        if Evidence.TRANSFER in kind.evidence:
            # An upload's bytes are those the peer acknowledged.
            moved = result.bytes_received if result.bytes_sent is None else result.bytes_sent
            transfer_bytes.add_metric(labels, float(moved or 0))
            transfer_rate.add_metric(labels, float(result.rate or 0.0))
    yield from (success, verdict, duration, phase, latency, runs, failures, last_run)
    yield from (last_change, last_success, failing_runs, interval, info, dns_answers)
    yield from (dns_verdict, cert_expiry)
    yield from (status_code, transfer_bytes, transfer_rate)


def _fingerprint_families(snap: Snapshot) -> Iterator[Metric]:
    """tls `fingerprints`: one series per listed browser shape, from the last run."""
    family = _gauge(
        "tls_fingerprint_success",
        "1 when the browser-shaped ClientHello got a ServerHello in the last run, else 0.",
        [*CHECK_LABELS, "fingerprint"],
    )
    for state in snap.states.values():
        result, check = state.result, state.check
        if result is None or Evidence.FINGERPRINTS not in REGISTRY[check.kind].evidence:
            continue
        for shape, ok in result.fingerprints.items():
            family.add_metric([check.service, check.name, check.kind, shape], 1.0 if ok else 0.0)
    yield family


def _transfer_direction_families(snap: Snapshot) -> Iterator[Metric]:
    """Which way each transfer check moves its bytes, so that alerts can tell a frozen
    upload from a frozen download."""
    family = _gauge(
        "transfer_direction_info",
        "The direction of a transfer check (value 1).",
        [*CHECK_LABELS, "direction"],
    )
    for state in snap.states.values():
        check, options = state.check, state.check.options
        if state.result is not None and isinstance(options, TransferOptions):
            family.add_metric([check.service, check.name, check.kind, options.direction], 1.0)
    yield family


def _service_families(snap: Snapshot) -> Iterator[Metric]:
    up = _gauge("service_up", "1 when every check of the service is ok.", ["service"])
    verdict = _gauge(
        "service_verdict",
        "The verdict of the service's first failing check, or ok (value 1).",
        ["service", "verdict"],
    )
    for service in snap.services:
        result = snap.service_result(service)
        if result is None:
            continue
        up.add_metric([service.name], 1.0 if result[0] else 0.0)
        verdict.add_metric([service.name, str(result[1])], 1.0)
    state = _gauge("vantage_state", "What the control services say (value 1).", ["state"])
    state.add_metric([str(snap.vantage())], 1.0)
    yield from (up, verdict, state)


def _exporter_families(snap: Snapshot) -> Iterator[Metric]:
    build = _gauge("exporter_build_info", "The exporter's version (value 1).", ["version"])
    build.add_metric([__version__], 1.0)
    reload_ok = _gauge(
        "exporter_config_last_reload_successful",
        "1 when the last configuration (re)load succeeded.",
        [],
    )
    reload_ok.add_metric([], 1.0 if snap.reload_successful else 0.0)
    reload_ts = _gauge(
        "exporter_config_last_reload_success_timestamp_seconds",
        "When the configuration was last loaded successfully (unix time).",
        [],
    )
    reload_ts.add_metric([], snap.reload_success_timestamp)
    lag = HistogramMetricFamily(
        _name("exporter_scheduler_lag_seconds"),
        "How late checks started against their schedule.",
        labels=[],
    )
    lag.add_metric([], snap.lag.cumulative(), snap.lag.total)
    yield from (build, reload_ok, reload_ts, lag)
