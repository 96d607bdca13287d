"""Every metric the exporter exposes, each name written out once with its type, help text and
labels (the README's metric table is the reference), so that grep finds a metric where it
is defined and the exposition cannot drift from the documentation by a typo."""

from __future__ import annotations

import dataclasses

GAUGE, COUNTER, HISTOGRAM = "gauge", "counter", "histogram"
CHECK_LABELS = ("service", "check", "kind")


@dataclasses.dataclass(frozen=True, slots=True)
class Family:
    """One metric family. `name` is the name samples carry (counters end in `_total`;
    a histogram's samples add `_bucket`, `_sum`, `_count`)."""

    name: str
    type: str
    help: str
    labels: tuple[str, ...] = ()

    def header(self) -> bytes:
        """HELP and TYPE lines in text format 0.0.4 (escaped as prometheus_client does)."""
        doc = self.help.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {self.name} {doc}\n# TYPE {self.name} {self.type}\n".encode()


# ---- per check, in exposition order -----------------------------------------------------------

CHECK_SUCCESS = Family(
    "reachability_check_success", GAUGE, "1 when the last run was ok, else 0.", CHECK_LABELS
)
CHECK_VERDICT = Family(
    "reachability_check_verdict",
    GAUGE,
    "The current verdict of the check (value 1).",
    (*CHECK_LABELS, "verdict"),
)
CHECK_DURATION = Family(
    "reachability_check_duration_seconds", GAUGE, "Duration of the last run.", CHECK_LABELS
)
CHECK_PHASE = Family(
    "reachability_check_phase_seconds",
    GAUGE,
    "Duration of the last run by phase.",
    (*CHECK_LABELS, "phase"),
)
CHECK_LATENCY = Family(
    "reachability_check_latency_seconds",
    HISTOGRAM,
    "Durations of successful runs.",
    CHECK_LABELS,
)
CHECK_RUNS = Family("reachability_check_runs_total", COUNTER, "Runs of the check.", CHECK_LABELS)
CHECK_FAILURES = Family(
    "reachability_check_failures_total",
    COUNTER,
    "Failed runs by verdict.",
    (*CHECK_LABELS, "verdict"),
)
CHECK_LAST_RUN = Family(
    "reachability_check_last_run_timestamp_seconds",
    GAUGE,
    "End of the last run (unix time).",
    CHECK_LABELS,
)
CHECK_LAST_CHANGE = Family(
    "reachability_check_last_change_timestamp_seconds",
    GAUGE,
    "When the verdict last changed (unix time): blocked since.",
    CHECK_LABELS,
)
CHECK_LAST_SUCCESS = Family(
    "reachability_check_last_success_timestamp_seconds",
    GAUGE,
    "End of the last ok run (unix time): last seen working.",
    CHECK_LABELS,
)
CHECK_CONSECUTIVE_FAILURES = Family(
    "reachability_check_consecutive_failures",
    GAUGE,
    "Runs in a row that were not ok (0 after an ok run): one bad run is not an outage.",
    CHECK_LABELS,
)
CHECK_INTERVAL = Family(
    "reachability_check_interval_seconds",
    GAUGE,
    "Configured interval between runs.",
    CHECK_LABELS,
)
CHECK_INFO = Family(
    "reachability_check_info", GAUGE, "The check's target (value 1).", (*CHECK_LABELS, "target")
)
DNS_ANSWERS = Family(
    "reachability_dns_answers",
    GAUGE,
    "Addresses in the last answer, per resolver.",
    (*CHECK_LABELS, "resolver"),
)
DNS_RESOLVER_VERDICT = Family(
    "reachability_dns_resolver_verdict",
    GAUGE,
    "Each resolver's own verdict (value 1).",
    (*CHECK_LABELS, "resolver", "verdict"),
)
TLS_CERT_EXPIRY = Family(
    "reachability_tls_cert_expiry_timestamp_seconds",
    GAUGE,
    "Leaf certificate notAfter (unix time).",
    CHECK_LABELS,
)
HTTP_STATUS_CODE = Family(
    "reachability_http_status_code",
    GAUGE,
    "Final HTTP status code of the last run (0: none).",
    CHECK_LABELS,
)
TRANSFER_BYTES = Family(
    "reachability_transfer_bytes", GAUGE, "Bytes received in the last transfer.", CHECK_LABELS
)
TRANSFER_RATE = Family(
    "reachability_transfer_rate_bytes_per_second",
    GAUGE,
    "Goodput of the last transfer.",
    CHECK_LABELS,
)

TLS_FINGERPRINT_SUCCESS = Family(
    "reachability_tls_fingerprint_success",
    GAUGE,
    "1 when the browser-shaped ClientHello got a ServerHello in the last run, else 0.",
    (*CHECK_LABELS, "fingerprint"),
)
TRANSFER_DIRECTION_INFO = Family(
    "reachability_transfer_direction_info",
    GAUGE,
    "The direction of a transfer check (value 1).",
    (*CHECK_LABELS, "direction"),
)

CHECK_FAMILIES = (
    CHECK_SUCCESS, CHECK_VERDICT, CHECK_DURATION, CHECK_PHASE, CHECK_LATENCY, CHECK_RUNS,
    CHECK_FAILURES, CHECK_LAST_RUN, CHECK_LAST_CHANGE, CHECK_LAST_SUCCESS,
    CHECK_CONSECUTIVE_FAILURES, CHECK_INTERVAL, CHECK_INFO, DNS_ANSWERS, DNS_RESOLVER_VERDICT,
    TLS_CERT_EXPIRY, HTTP_STATUS_CODE, TRANSFER_BYTES, TRANSFER_RATE, TLS_FINGERPRINT_SUCCESS,
    TRANSFER_DIRECTION_INFO,
)  # fmt: skip

# ---- per service and vantage ------------------------------------------------------------------

SERVICE_UP = Family(
    "reachability_service_up", GAUGE, "1 when every check of the service is ok.", ("service",)
)
SERVICE_VERDICT = Family(
    "reachability_service_verdict",
    GAUGE,
    "The verdict of the service's first failing check, or ok (value 1).",
    ("service", "verdict"),
)
VANTAGE_STATE = Family(
    "reachability_vantage_state", GAUGE, "What the control services say (value 1).", ("state",)
)

# ---- the exporter itself ----------------------------------------------------------------------

BUILD_INFO = Family(
    "reachability_exporter_build_info",
    GAUGE,
    "The exporter's version, source revision and Python version (value 1).",
    ("version", "revision", "pythonversion"),
)
CONFIG_LAST_RELOAD_SUCCESSFUL = Family(
    "reachability_exporter_config_last_reload_successful",
    GAUGE,
    "1 when the last configuration (re)load succeeded.",
)
CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP = Family(
    "reachability_exporter_config_last_reload_success_timestamp_seconds",
    GAUGE,
    "When the configuration was last loaded successfully (unix time).",
)
SCHEDULER_LAG = Family(
    "reachability_exporter_scheduler_lag_seconds",
    HISTOGRAM,
    "How late checks started against their schedule.",
)
EVENT_LOOP_STALL = Family(
    "reachability_exporter_event_loop_stall_seconds",
    HISTOGRAM,
    "How late the event loop woke up a timer: time it spent blocked instead of serving probes.",
)
RERUNS = Family(
    "reachability_exporter_stalled_runs_total",
    COUNTER,
    "Runs discarded and run again because the exporter itself stalled during them.",
)
