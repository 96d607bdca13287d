"""The result store: the latest result of every check, and its Prometheus exposition.

A check's lines are rendered once, when its result is recorded (text format 0.0.4, one chunk
per metric family), so a scrape only joins bytes under a lock: at 10,000 checks rendering
families at scrape time took seconds of GIL from the probes. `record()` is the single place a
result enters and where a verdict change is seen."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from exporter import buildinfo
from exporter import metricnames as m
from exporter.config import Check, Config, Service, TransferOptions
from exporter.exposition import (
    NO_LINES,
    CheckColumns,
    CheckLayout,
    Form,
    Histogram,
    Piece,
    Spliced,
    join,
    label_set,
    label_value,
    labelled_lines,
    sample,
    tail,
)
from exporter.kinds import REGISTRY
from exporter.result import (
    Result,
)
from exporter.vantage import vantage_state
from exporter.verdicts import EXPORTER_FAILURES, VantageState, Verdict

# Latency of successful runs: from a nearby resolver (ms) to a slow transfer (tens of s).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0)
STALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_HTTP_KINDS = ("http", "transfer")

_CHECK_HEADERS = tuple(family.header() for family in m.CHECK_FAMILIES)
_LATENCY = m.CHECK_FAMILIES.index(m.CHECK_LATENCY)
_FAILURES = m.CHECK_FAMILIES.index(m.CHECK_FAILURES)
# Families whose lines say only what the configuration says: kept from run to run.
_INTERVAL = m.CHECK_FAMILIES.index(m.CHECK_INTERVAL)
_INFO = m.CHECK_FAMILIES.index(m.CHECK_INFO)
_DIRECTION = m.CHECK_FAMILIES.index(m.TRANSFER_DIRECTION_INFO)
# The families whose chunks are Spliced (exporter/exposition.py), the rest are bytes.
_SPLICED = frozenset({m.CHECK_FAMILIES.index(m.CHECK_VERDICT), _LATENCY, _FAILURES})
# The families of one line per check, kept as tails (exporter/exposition.py).
_TAILS = frozenset(
    m.CHECK_FAMILIES.index(family)
    for family in (
        m.CHECK_SUCCESS, m.CHECK_DURATION, m.CHECK_RUNS, m.CHECK_LAST_RUN, m.CHECK_LAST_CHANGE,
        m.CHECK_LAST_SUCCESS, m.CHECK_CONSECUTIVE_FAILURES, m.CHECK_INTERVAL,
        m.TLS_CERT_EXPIRY, m.HTTP_STATUS_CODE, m.TRANSFER_BYTES, m.TRANSFER_RATE,
    )
)  # fmt: skip
# How a scrape writes the families above from each check's rendered tuple.
_LAYOUT = CheckLayout(
    [
        (family.name, header, Form.TAIL if i in _TAILS else Form.SPLICED if i in _SPLICED
         else Form.TEXT)
        for i, (family, header) in enumerate(zip(m.CHECK_FAMILIES, _CHECK_HEADERS, strict=True))
    ]
)  # fmt: skip
_NOT_RUN: tuple[bytes | Spliced, ...] = tuple(
    NO_LINES if index in _SPLICED else b"" for index in range(len(m.CHECK_FAMILIES))
)


def failure_verdicts(kind: str) -> frozenset[Verdict]:
    """Every failure a kind can report, each pre-created at 0 in failures_total: a counter
    that appears only at its first increment hides that increment from increase()."""
    found = REGISTRY.get(kind)
    return (found.verdicts if found else frozenset()) | EXPORTER_FAILURES


@dataclasses.dataclass(slots=True)
class CheckState:
    check: Check
    result: Result | None = None
    since: float = 0.0  # when the verdict last changed
    last_success: float | None = None  # end of the last ok run
    failing_runs: int = 0  # non-ok runs in a row
    runs: int = 0
    # Only verdicts that occurred; the exposition adds zeros for the rest of the kind's.
    failures: dict[Verdict, int] = dataclasses.field(default_factory=dict)
    latency: Histogram = dataclasses.field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    # One chunk of text-format lines per family of metricnames.CHECK_FAMILIES.
    rendered: tuple[bytes | Spliced, ...] = _NOT_RUN
    # The check's labels (`service="…",check="…",kind="…"`), shared by its chunks.
    labels: str = ""
    labels_bytes: bytes = b""
    # The bytes its lines take in the exposition, kept so that a scrape adds one number per
    # check for its Content-Length, not the length of every chunk (_LAYOUT).
    length: int = 0

    def copy(self) -> CheckState:
        return dataclasses.replace(self, failures=dict(self.failures), latency=self.latency.copy())

    @property
    def verdict(self) -> Verdict | None:
        return self.result.verdict if self.result else None

    def render(
        self, *, latency: bool = True, failures: bool = True, same_check: bool = False
    ) -> None:
        """Render this check's lines, once per recorded result (or reload). An ok run leaves
        the failure counters as they were, a failed one the latency histogram: their chunks,
        the largest, are kept when `latency` or `failures` is False. With `same_check` (a
        new result of the check rendered last time) the lines that say only what the
        configuration says are kept too."""
        result, check = self.result, self.check
        if result is None:
            self.rendered, self.length = _NOT_RUN, 0
            return
        previous = self.rendered
        if previous is _NOT_RUN:
            latency = failures = True
            same_check = False
        if not self.labels:
            # Made once: the labels are the check's key and kind, which a state keeps for
            # life (a reload that changes the kind makes a new state).
            self.labels = label_set(m.CHECK_LABELS, (check.service, check.name, check.kind))
            self.labels_bytes = self.labels.encode()
        extra = self.labels + ","
        spliced_labels = self.labels_bytes

        def one(family: m.Family, value: float) -> bytes:
            # The family names the line for the reader; a one-line family keeps only its
            # tail (the column adds the name and labels).
            return tail(value)

        def each(family: m.Family, pairs: Sequence[tuple[str, float]]) -> bytes:
            if not pairs:
                return b""
            return "".join([sample(family.name, extra + more, v) for more, v in pairs]).encode()

        if failures:
            failed = {str(v): 0 for v in failure_verdicts(check.kind)}
            failed.update((str(v), count) for v, count in self.failures.items())
            pairs = tuple((v, float(count)) for v, count in sorted(failed.items()))
            failures_chunk: bytes | Spliced = labelled_lines(
                m.CHECK_FAILURES.name, "verdict", pairs
            )
        else:
            failures_chunk = previous[_FAILURES]
        resolvers = result.resolvers
        is_http = check.kind in _HTTP_KINDS
        is_transfer = check.kind == "transfer"
        moved = result.bytes_received if result.bytes_sent is None else result.bytes_sent
        direction = check.options.direction if isinstance(check.options, TransferOptions) else ""
        self.rendered = (
            one(m.CHECK_SUCCESS, 1.0 if result.ok else 0.0),
            labelled_lines(m.CHECK_VERDICT.name, "verdict", ((str(result.verdict), 1.0),)),
            one(m.CHECK_DURATION, result.duration),
            each(
                m.CHECK_PHASE,
                [
                    (f'phase="{phase}"', result.phases.get(phase, 0.0))
                    for phase in REGISTRY[check.kind].phases
                ],
            ),
            self.latency.skeleton(m.CHECK_LATENCY) if latency else previous[_LATENCY],
            one(m.CHECK_RUNS, float(self.runs)),
            failures_chunk,
            one(m.CHECK_LAST_RUN, result.finished),
            one(m.CHECK_LAST_CHANGE, self.since),
            b"" if self.last_success is None else one(m.CHECK_LAST_SUCCESS, self.last_success),
            one(m.CHECK_CONSECUTIVE_FAILURES, float(self.failing_runs)),
            previous[_INTERVAL] if same_check else one(m.CHECK_INTERVAL, check.interval),
            previous[_INFO]
            if same_check
            else each(m.CHECK_INFO, [(f'target="{label_value(check.target)}"', 1.0)]),
            each(
                m.DNS_ANSWERS,
                [(f'resolver="{label_value(a.resolver)}"', len(a.addresses)) for a in resolvers],
            ),
            each(
                m.DNS_RESOLVER_VERDICT,
                [
                    (f'resolver="{label_value(a.resolver)}",verdict="{a.verdict}"', 1.0)
                    for a in resolvers
                ],
            ),
            b"" if result.cert_expiry is None else one(m.TLS_CERT_EXPIRY, result.cert_expiry),
            one(m.HTTP_STATUS_CODE, float(result.status_code or 0)) if is_http else b"",
            # An upload's bytes are those the peer acknowledged.
            one(m.TRANSFER_BYTES, float(moved or 0)) if is_transfer else b"",
            one(m.TRANSFER_RATE, float(result.rate or 0.0)) if is_transfer else b"",
            each(
                m.TLS_FINGERPRINT_SUCCESS,
                [
                    (f'fingerprint="{label_value(shape)}"', 1.0 if ok else 0.0)
                    for shape, ok in result.fingerprints.items()
                ],
            ),
            previous[_DIRECTION]
            if same_check
            else each(m.TRANSFER_DIRECTION_INFO, [(f'direction="{direction}"', 1.0)])
            if isinstance(check.options, TransferOptions)
            else b"",
        )
        self.length = _LAYOUT.length(self.rendered, spliced_labels)


class _ServiceTally:
    """What a service's two series need, kept up to date run by run: with every check of a
    service re-read on each run, 10,000 checks in one service cost O(n²) at start."""

    __slots__ = ("failing", "index", "pending")

    def __init__(self, service: Service, states: Mapping[tuple[str, str], CheckState]) -> None:
        self.index = {check.name: i for i, check in enumerate(service.checks)}
        self.pending = 0  # checks without a result yet
        self.failing: dict[int, Verdict] = {}  # configuration index -> non-ok verdict
        for i, check in enumerate(service.checks):
            state = states.get(check.key)
            if state is None or state.result is None:
                self.pending += 1
            elif state.result.verdict is not Verdict.OK:
                self.failing[i] = state.result.verdict

    def outcome(self) -> tuple[bool, Verdict] | None:
        if self.pending:
            return None
        if not self.failing:
            return True, Verdict.OK
        return False, self.failing[min(self.failing)]


def service_outcome(
    service: Service, states: Mapping[tuple[str, str], CheckState]
) -> tuple[bool, Verdict] | None:
    """(up, verdict) once every check of the service has run, else None: the verdict is the
    first failing check's, in configuration order."""
    found = [states.get(c.key) for c in service.checks]
    if any(state is None or state.result is None for state in found):
        return None
    for state in found:
        assert state is not None and state.result is not None
        if state.result.verdict is not Verdict.OK:
            return False, state.result.verdict
    return True, Verdict.OK


def vantage_of(
    services: Iterable[Service], states: Mapping[tuple[str, str], CheckState]
) -> VantageState:
    controls = []
    for service in services:
        if service.role == "control":
            outcome = service_outcome(service, states)
            controls.append((service.scope, None if outcome is None else outcome[0]))
    return vantage_state(controls)


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
        return service_outcome(service, self.states)

    def service_since(self, service: Service) -> float | None:
        """When the service's verdict last changed: the newest change among its checks."""
        states = self.service_states(service)
        return max((s.since for s in states if s.result), default=None)

    def vantage(self) -> VantageState:
        return vantage_of(self.services, self.states)


def _process_exposition() -> Callable[[], bytes]:
    registry = CollectorRegistry()
    registry.register(ProcessCollector(registry=None))
    return lambda: generate_latest(registry)


# Called after record() when a check's verdict changed (its first result included, with None
# as the previous verdict, or the restored one), and on a restored check's first run even if
# it did not change (previous is then the new verdict): the evidence journal, the change log,
# the verdict history and the vantage state's since.
VerdictObserver = Callable[[Check, Verdict | None, Result], None]


class ResultStore:
    """Latest results per check, written from the event loop, read from web threads."""

    def __init__(self, *, process_metrics: bool = True) -> None:
        self._lock = threading.Lock()
        # The evidence journal's hooks (exporter/changes.py): told of every verdict change,
        # and the verdicts and "since" restored at start, used up by each check's first run.
        self.observer: VerdictObserver | None = None
        self._restored: dict[tuple[str, str], tuple[Verdict, float]] = {}
        self._services: dict[str, Service] = {}
        self._states: dict[tuple[str, str], CheckState] = {}
        # The states' chunks as scrapes read them, and each check's place among them.
        self._columns = CheckColumns(_LAYOUT, [], [], [])
        self._positions: dict[tuple[str, str], int] = {}
        self._service_lines: dict[str, tuple[bytes, bytes]] = {}
        self._tallies: dict[str, _ServiceTally] = {}
        self._vantage_line = b""
        self._lag = Histogram(LAG_BUCKETS)
        self._stall = Histogram(STALL_BUCKETS)
        self._stalled_runs = 0
        self._reload_successful = False
        self._reload_success_timestamp = 0.0
        self._ready = False
        self._build_info = sample(
            m.BUILD_INFO.name,
            label_set(m.BUILD_INFO.labels, buildinfo.labels()),
            1.0,
        ).encode()
        self._process = _process_exposition() if process_metrics else (lambda: b"")
        self._render_vantage()

    def apply_config(self, config: Config) -> None:
        """Keep the state of checks that remain (their "since" survives a reload), start
        new ones empty, forget removed ones so their series vanish."""
        with self._lock:
            states = {}
            for check in config.checks():
                state = self._states.get(check.key)
                if state is None or state.check.kind != check.kind:
                    state = CheckState(check)
                if state.check != check:
                    state.check = check
                    state.render()
                states[check.key] = state
            self._states = states
            self._positions = {key: index for index, key in enumerate(states)}
            kept = states.values()
            self._columns = CheckColumns(
                _LAYOUT,
                [state.rendered for state in kept],
                [state.labels_bytes for state in kept],
                [state.length for state in kept],
            )
            self._services = dict(config.services)
            self._service_lines = {}
            self._tallies = {
                name: _ServiceTally(service, states) for name, service in self._services.items()
            }
            for service in self._services.values():
                self._render_service(service)
            self._render_vantage()
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

    @property
    def ready(self) -> bool:
        """Cheap to ask (no snapshot): /-/ready is polled."""
        return self._ready

    def record(self, check: Check, result: Result) -> None:
        with self._lock:
            state = self._states.get(check.key)
            if state is None or state.check != check:
                return  # removed or changed by a reload while it ran
            previous = state.verdict
            first = state.result is None
            restored = first and check.key in self._restored
            if restored:
                previous, state.since = self._restored.pop(check.key)
            changed = previous is not result.verdict
            notify = changed or restored
            if changed:
                state.since = result.finished
            result.keep()
            state.result = result
            state.runs += 1
            if result.ok:
                state.latency.observe(result.duration)
                state.last_success = result.finished
                state.failing_runs = 0
            else:
                state.failures[result.verdict] = state.failures.get(result.verdict, 0) + 1
                state.failing_runs += 1
            state.render(latency=result.ok, failures=not result.ok, same_check=True)
            self._columns.set(
                self._positions[check.key], state.rendered, state.labels_bytes, state.length
            )
            service = self._services.get(check.service)
            tally = self._tallies.get(check.service)
            if service is not None and tally is not None and (changed or first):
                index = tally.index[check.name]
                if first:
                    tally.pending -= 1
                if result.ok:
                    tally.failing.pop(index, None)
                else:
                    tally.failing[index] = result.verdict
                self._render_service(service)
                if service.role == "control":
                    self._render_vantage()
        # Outside the lock: the observer may take a snapshot.
        if notify and self.observer is not None:
            self.observer(check, previous, result)

    def restore(self, key: tuple[str, str], verdict: Verdict, since: float) -> None:
        """A check's verdict and "since" from before a restart: a first run that gives the
        same verdict keeps that "since" (blocked since last week, not since the restart)."""
        with self._lock:
            self._restored[key] = (verdict, since)

    def observe_lag(self, seconds: float) -> None:
        with self._lock:
            self._lag.observe(max(seconds, 0.0))

    def observe_stall(self, seconds: float) -> None:
        with self._lock:
            self._stall.observe(max(seconds, 0.0))

    def count_stalled_run(self) -> None:
        with self._lock:
            self._stalled_runs += 1

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                services=list(self._services.values()),
                states={key: state.copy() for key, state in self._states.items()},
                lag=self._lag.copy(),
                reload_successful=self._reload_successful,
                reload_success_timestamp=self._reload_success_timestamp,
                ready=self._ready,
            )

    # ---- exposition -------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The whole /metrics body (text format 0.0.4): reachability_* and process_*."""
        return join(self.exposition_parts())

    def exposition_parts(self) -> list[Piece]:
        """The body in pieces, for a server that writes (or compresses) them one by one
        instead of copying 40 MB at 10,000 checks into one object first."""
        parts = self._reachability_parts()
        parts.append(self._process())
        return parts

    def reachability_exposition(self) -> bytes:
        return join(self._reachability_parts())

    def _reachability_parts(self) -> list[Piece]:
        # Under the lock only the columns' lists, which record() copies before it writes to
        # one a scrape holds: the scrape reads them as it is written.
        with self._lock:
            return [self._columns.lines(), *self._global_parts()]

    def _global_parts(self) -> list[Piece]:
        """Everything after the per-check families; called under the lock."""
        parts: list[Piece] = []
        lines = self._service_lines.values()
        parts.append(m.SERVICE_UP.header())
        parts.extend(up for up, _ in lines)
        parts.append(m.SERVICE_VERDICT.header())
        parts.extend(verdict for _, verdict in lines)
        parts += (m.VANTAGE_STATE.header(), self._vantage_line)
        parts += (m.BUILD_INFO.header(), self._build_info)
        parts += (
            m.CONFIG_LAST_RELOAD_SUCCESSFUL.header(),
            sample(
                m.CONFIG_LAST_RELOAD_SUCCESSFUL.name,
                "",
                1.0 if self._reload_successful else 0.0,
            ).encode(),
            m.CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP.header(),
            sample(
                m.CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP.name, "", self._reload_success_timestamp
            ).encode(),
            m.SCHEDULER_LAG.header(),
            self._lag.render(m.SCHEDULER_LAG, "").encode(),
            m.EVENT_LOOP_STALL.header(),
            self._stall.render(m.EVENT_LOOP_STALL, "").encode(),
            m.RERUNS.header(),
            sample(m.RERUNS.name, "", float(self._stalled_runs)).encode(),
        )
        return parts

    def _render_service(self, service: Service) -> None:
        outcome = self._tallies[service.name].outcome()
        if outcome is None:
            self._service_lines.pop(service.name, None)
            return
        up, verdict = outcome
        labels = f'service="{label_value(service.name)}"'
        self._service_lines[service.name] = (
            sample(m.SERVICE_UP.name, labels, 1.0 if up else 0.0).encode(),
            sample(m.SERVICE_VERDICT.name, f'{labels},verdict="{verdict}"', 1.0).encode(),
        )

    def _render_vantage(self) -> None:
        controls = []
        for name, service in self._services.items():
            if service.role == "control":
                outcome = self._tallies[name].outcome() if name in self._tallies else None
                controls.append((service.scope, None if outcome is None else outcome[0]))
        state = vantage_state(controls)
        self._vantage_line = sample(m.VANTAGE_STATE.name, f'state="{state}"', 1.0).encode()


class ReachabilityCollector(Collector):
    """The store's exposition as prometheus_client families, for registries (tests reading
    samples with `get_sample_value`, other output formats). Parsed from the same bytes that
    /metrics serves, so the two cannot disagree."""

    def __init__(self, store: ResultStore) -> None:
        self.store = store

    def collect(self) -> Iterable[Metric]:
        text = self.store.reachability_exposition().decode()
        yield from text_string_to_metric_families(text)
