"""The exposition as the exporter rendered it before the store pre-rendered it: built with
prometheus_client families from a snapshot at scrape time (the code of exporter/metrics.py
as it was), kept as the reference the pre-rendered bytes are compared against."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.config import TransferOptions
from exporter.kinds import REGISTRY, Evidence
from exporter.metrics import ResultStore, Snapshot

NAMESPACE = "reachability"


def _name(suffix: str) -> str:
    return f"{NAMESPACE}_{suffix}"


CHECK_LABELS = ["service", "check", "kind"]


class PreviousCollector(Collector):
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
