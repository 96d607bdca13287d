"""The store's exposition: every family of the README's metric table, read through an
injected registry, identical in samples to the previous prometheus_client rendering, grouped
by family, and accepted by promtool."""

from __future__ import annotations

import ast
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter import buildinfo, metricnames
from exporter.config import load_text
from exporter.kinds import REGISTRY
from exporter.metrics import ReachabilityCollector, ResultStore, failure_verdicts
from exporter.result import ResolverAnswer, Result
from exporter.vantage import vantage_state
from exporter.verdicts import VantageState, Verdict
from peers.previous_collector import PreviousCollector

CONFIG = """
bogons: []
resolvers: {control: "udp://127.0.0.1:5353"}
services:
  web:
    checks:
      - {name: dns, kind: dns, target: example.org, resolvers: [system]}
      - {name: page, kind: http, target: "https://example.org/"}
      - {name: big, kind: transfer, target: "https://example.org/big"}
  foreign:
    role: control
    checks: [{name: tcp, kind: tcp, target: "192.0.2.1:443"}]
  domestic:
    role: control
    scope: domestic
    checks: [{name: tcp, kind: tcp, target: "192.0.2.2:443"}]
"""


def make_store() -> tuple[ResultStore, CollectorRegistry]:
    store = ResultStore()
    store.apply_config(load_text(CONFIG))
    registry = CollectorRegistry()
    registry.register(ReachabilityCollector(store))
    return store, registry


def check(store: ResultStore, service: str, name: str):  # type: ignore[no-untyped-def]
    return store.snapshot().states[(service, name)].check


def finished(verdict: Verdict, at: float, **kwargs: object) -> Result:
    result = Result(verdict, **kwargs)  # type: ignore[arg-type]
    result.finished = at
    result.duration = 0.2
    return result


def test_check_series_appear_only_after_the_first_run() -> None:
    store, registry = make_store()
    labels = {"service": "web", "check": "page", "kind": "http"}
    assert registry.get_sample_value("reachability_check_success", labels) is None
    store.record(check(store, "web", "page"), finished(Verdict.OK, 100.0, status_code=200))
    assert registry.get_sample_value("reachability_check_success", labels) == 1.0
    assert registry.get_sample_value("reachability_http_status_code", labels) == 200.0


def test_verdict_series_is_one_per_check_and_since_tracks_changes() -> None:
    store, registry = make_store()
    page = check(store, "web", "page")
    labels = {"service": "web", "check": "page", "kind": "http"}
    store.record(page, finished(Verdict.OK, 100.0))
    store.record(page, finished(Verdict.TLS_RESET, 160.0))
    store.record(page, finished(Verdict.TLS_RESET, 220.0))
    text = generate_latest(registry).decode()
    verdict_lines = [
        line
        for line in text.splitlines()
        if line.startswith("reachability_check_verdict{") and 'check="page"' in line
    ]
    assert len(verdict_lines) == 1 and 'verdict="tls_reset"' in verdict_lines[0]
    since = registry.get_sample_value("reachability_check_last_change_timestamp_seconds", labels)
    assert since == 160.0
    assert registry.get_sample_value("reachability_check_runs_total", labels) == 3.0
    failures = registry.get_sample_value(
        "reachability_check_failures_total", {**labels, "verdict": "tls_reset"}
    )
    assert failures == 2.0
    assert registry.get_sample_value("reachability_check_latency_seconds_count", labels) == 1.0


def test_phases_of_the_kind_read_zero_when_not_reached() -> None:
    store, registry = make_store()
    store.record(
        check(store, "web", "page"),
        finished(Verdict.TCP_REFUSED, 1.0, phases={"resolve": 0.01, "connect": 0.002}),
    )
    labels = {"service": "web", "check": "page", "kind": "http"}
    for phase, value in [("resolve", 0.01), ("connect", 0.002), ("tls", 0.0),
                         ("first_byte", 0.0), ("transfer", 0.0)]:  # fmt: skip
        got = registry.get_sample_value(
            "reachability_check_phase_seconds", {**labels, "phase": phase}
        )
        assert got == value


def test_dns_series_per_resolver() -> None:
    store, registry = make_store()
    answers = [
        ResolverAnswer("system", Verdict.DNS_NXDOMAIN, [], "NXDOMAIN"),
        ResolverAnswer(
            "control", Verdict.OK, ["192.0.2.7", "192.0.2.8"], "NOERROR", is_control=True
        ),
    ]
    store.record(check(store, "web", "dns"), finished(Verdict.DNS_NXDOMAIN, 5.0, resolvers=answers))
    labels = {"service": "web", "check": "dns", "kind": "dns"}
    get = registry.get_sample_value
    assert get("reachability_dns_answers", {**labels, "resolver": "control"}) == 2.0
    assert get("reachability_dns_answers", {**labels, "resolver": "system"}) == 0.0
    assert (
        get(
            "reachability_dns_resolver_verdict",
            {**labels, "resolver": "system", "verdict": "dns_nxdomain"},
        )
        == 1.0
    )


def test_transfer_series() -> None:
    store, registry = make_store()
    store.record(
        check(store, "web", "big"),
        finished(Verdict.STALLED, 5.0, bytes_received=16384, rate=3000.0, status_code=200),
    )
    labels = {"service": "web", "check": "big", "kind": "transfer"}
    assert registry.get_sample_value("reachability_transfer_bytes", labels) == 16384.0
    assert (
        registry.get_sample_value("reachability_transfer_rate_bytes_per_second", labels) == 3000.0
    )


def test_service_up_waits_for_every_check_and_names_the_first_failure() -> None:
    store, registry = make_store()
    store.record(check(store, "web", "dns"), finished(Verdict.OK, 1.0))
    assert registry.get_sample_value("reachability_service_up", {"service": "web"}) is None
    store.record(check(store, "web", "page"), finished(Verdict.HTTP_BLOCKPAGE, 2.0))
    store.record(check(store, "web", "big"), finished(Verdict.STALLED, 3.0))
    assert registry.get_sample_value("reachability_service_up", {"service": "web"}) == 0.0
    assert (
        registry.get_sample_value(
            "reachability_service_verdict", {"service": "web", "verdict": "http_blockpage"}
        )
        == 1.0
    )


def test_vantage_state_follows_the_controls() -> None:
    store, registry = make_store()

    def state() -> str:
        for name in ("online", "whitelist", "offline", "unknown"):
            if registry.get_sample_value("reachability_vantage_state", {"state": name}) == 1.0:
                return name
        raise AssertionError("no vantage state series")

    assert state() == "unknown"
    store.record(check(store, "domestic", "tcp"), finished(Verdict.OK, 1.0))
    assert state() == "unknown"  # online and whitelist look alike until a foreign result
    store.record(check(store, "foreign", "tcp"), finished(Verdict.TCP_TIMEOUT, 2.0))
    assert state() == "whitelist"
    store.record(check(store, "domestic", "tcp"), finished(Verdict.TCP_TIMEOUT, 3.0))
    assert state() == "offline"
    store.record(check(store, "foreign", "tcp"), finished(Verdict.OK, 4.0))
    assert state() == "online"


@pytest.mark.parametrize(
    ("controls", "expected"),
    [
        ([], VantageState.UNKNOWN),
        ([("foreign", None)], VantageState.UNKNOWN),
        ([("domestic", True)], VantageState.ONLINE),
        ([("domestic", False)], VantageState.OFFLINE),
        ([("foreign", True), ("domestic", False)], VantageState.ONLINE),
        ([("foreign", False), ("domestic", True)], VantageState.WHITELIST),
        ([("foreign", False), ("foreign", True)], VantageState.ONLINE),
        ([("foreign", False), ("domestic", False)], VantageState.OFFLINE),
    ],
)
def test_vantage_state_rules(
    controls: list[tuple[str, bool | None]], expected: VantageState
) -> None:
    assert vantage_state(controls) == expected


def test_a_reload_drops_removed_checks_and_keeps_the_rest() -> None:
    store, registry = make_store()
    store.record(check(store, "web", "page"), finished(Verdict.TLS_RESET, 50.0))
    store.record(check(store, "web", "dns"), finished(Verdict.OK, 50.0))
    dns_line = "      - {name: dns, kind: dns, target: example.org, resolvers: [system]}\n"
    store.apply_config(load_text(CONFIG.replace(dns_line, "")))
    labels = {"service": "web", "check": "page", "kind": "http"}
    assert (
        registry.get_sample_value("reachability_check_last_change_timestamp_seconds", labels)
        == 50.0
    )
    gone = {"service": "web", "check": "dns", "kind": "dns"}
    assert registry.get_sample_value("reachability_check_success", gone) is None


def test_a_reload_that_changes_a_checks_settings_shows_them_in_every_later_run() -> None:
    # A new result of the same check keeps the lines that say only what the configuration
    # says (interval, target, direction); a reload that changes them must still show.
    store, registry = make_store()
    page = {"service": "web", "check": "page", "kind": "http"}
    big = {"service": "web", "check": "big", "kind": "transfer"}
    store.record(check(store, "web", "page"), finished(Verdict.OK, 50.0, status_code=200))
    store.record(check(store, "web", "big"), finished(Verdict.OK, 50.0, bytes_received=10))
    changed = CONFIG.replace(
        'target: "https://example.org/"}', 'target: "https://example.net/", interval: 17s}'
    )
    changed = changed.replace(
        'target: "https://example.org/big"}', 'target: "https://example.org/up", direction: upload}'
    )
    store.apply_config(load_text(changed))
    for at in (60.0, 70.0):
        store.record(check(store, "web", "page"), finished(Verdict.OK, at, status_code=200))
        store.record(check(store, "web", "big"), finished(Verdict.OK, at, bytes_sent=10))
        assert registry.get_sample_value("reachability_check_interval_seconds", page) == 17.0
        info = {**page, "target": "https://example.net/"}
        assert registry.get_sample_value("reachability_check_info", info) == 1.0
        old = {**page, "target": "https://example.org/"}
        assert registry.get_sample_value("reachability_check_info", old) is None
        upload = {**big, "direction": "upload"}
        assert registry.get_sample_value("reachability_transfer_direction_info", upload) == 1.0
        download = {**big, "direction": "download"}
        assert registry.get_sample_value("reachability_transfer_direction_info", download) is None


def test_exporter_series_and_promtool_accepts_the_exposition() -> None:
    store, registry = make_store()
    for (service, name), verdict in [
        (("web", "page"), Verdict.OK),
        (("web", "big"), Verdict.THROTTLED),
    ]:
        store.record(
            check(store, service, name), finished(verdict, 1.0, bytes_received=1, rate=2.0)
        )
    store.observe_lag(0.002)
    assert registry.get_sample_value("reachability_exporter_config_last_reload_successful") == 1.0
    build = {
        "version": __import__("exporter").__version__,
        "revision": buildinfo.revision(),
        "pythonversion": platform.python_version(),
    }
    assert registry.get_sample_value("reachability_exporter_build_info", build) == 1.0
    assert registry.get_sample_value("reachability_exporter_scheduler_lag_seconds_count") == 1.0
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by scripts/test.sh (Debian package prometheus)"
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=store.exposition(),
        capture_output=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert checked.stdout.decode().strip() == "" and checked.stderr.decode().strip() == ""


def test_consecutive_failures_and_last_success_tell_a_streak_from_a_blip() -> None:
    store, registry = make_store()
    page = check(store, "web", "page")
    labels = {"service": "web", "check": "page", "kind": "http"}
    store.record(page, finished(Verdict.TCP_TIMEOUT, 10.0))
    assert registry.get_sample_value("reachability_check_consecutive_failures", labels) == 1.0
    assert (
        registry.get_sample_value("reachability_check_last_success_timestamp_seconds", labels)
        is None
    )  # never seen working yet
    store.record(page, finished(Verdict.OK, 20.0))
    store.record(page, finished(Verdict.TCP_TIMEOUT, 30.0))
    store.record(page, finished(Verdict.TCP_REFUSED, 40.0))
    assert registry.get_sample_value("reachability_check_consecutive_failures", labels) == 2.0
    assert (
        registry.get_sample_value("reachability_check_last_success_timestamp_seconds", labels)
        == 20.0
    )
    store.record(page, finished(Verdict.OK, 50.0))
    assert registry.get_sample_value("reachability_check_consecutive_failures", labels) == 0.0


REPO = Path(__file__).resolve().parents[1]


def families_of(text: str) -> dict[str, tuple[str, str, set[tuple[str, frozenset, float]]]]:
    """name -> (type, help, samples), as Prometheus would read the text."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        samples = {(s.name, frozenset(s.labels.items()), s.value) for s in family.samples}
        out[family.name] = (family.type, family.documentation, samples)
    return out


def busy_store() -> ResultStore:
    """A store with a result of every shape: failures, resolvers, certificates, transfers,
    a service with a failing check, a control, lag and a label that needs escaping."""
    store, _ = make_store()
    answers = [
        ResolverAnswer("system", Verdict.DNS_NXDOMAIN, [], "NXDOMAIN"),
        ResolverAnswer("control", Verdict.OK, ["192.0.2.7"], "NOERROR", is_control=True),
    ]
    page, big, dns = (check(store, "web", n) for n in ("page", "big", "dns"))
    store.record(dns, finished(Verdict.DNS_NXDOMAIN, 5.0, resolvers=answers))
    phases = {"resolve": 0.001, "connect": 0.002, "tls": 0.01}
    store.record(
        page, finished(Verdict.OK, 10.0, status_code=200, cert_expiry=1.9e9, phases=phases)
    )
    store.record(page, finished(Verdict.TLS_RESET, 20.0, phases={"resolve": 0.001}))
    store.record(big, finished(Verdict.STALLED, 30.0, bytes_received=16384, rate=1e3))
    store.record(check(store, "foreign", "tcp"), finished(Verdict.OK, 40.0))
    store.observe_lag(0.002)
    store.observe_lag(7.0)
    return store


def test_pre_rendered_exposition_has_the_samples_of_the_previous_rendering() -> None:
    store = busy_store()
    previous = CollectorRegistry()
    previous.register(PreviousCollector(store))
    old = families_of(generate_latest(previous).decode())
    new = families_of(store.exposition().decode())
    zeros = {
        ("reachability_check_failures_total",
         frozenset({"service": s, "check": c, "kind": kind, "verdict": str(v)}.items()), 0.0)
        for s, c, kind, seen in [("web", "dns", "dns", Verdict.DNS_NXDOMAIN),
                                 ("web", "page", "http", Verdict.TLS_RESET),
                                 ("web", "big", "transfer", Verdict.STALLED),
                                 ("foreign", "tcp", "tcp", None)]
        for v in failure_verdicts(kind) if v is not seen
    }  # fmt: skip
    for name, (kind, doc, samples) in old.items():
        assert name in new, name
        assert new[name][0] == kind
        if name == "reachability_exporter_build_info":
            assert doc.split("'")[0] in new[name][1]
            ((_, labels, value),) = new[name][2]
            assert value == 1.0
            assert dict(labels)["version"] == dict(next(iter(samples))[1])["version"]
            continue
        assert new[name][1] == doc, name
        if name == "reachability_check_failures":
            assert new[name][2] == samples | zeros
        else:
            assert new[name][2] == samples, name
    added = set(new) - set(old) - {n for n in new if n.startswith("process_")}
    assert added == {"reachability_exporter_event_loop_stall_seconds",
                     "reachability_exporter_stalled_runs"}  # fmt: skip


def test_every_family_is_announced_once_and_its_samples_are_contiguous() -> None:
    text = busy_store().exposition().decode()
    announced: list[str] = []
    sample_families: list[str] = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            announced.append(line.split()[2])
        elif line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            owner = max((f for f in announced if name.startswith(f)), key=len)
            assert owner == announced[-1], f"{name} outside its family block"
            sample_families.append(owner)
    assert len(announced) == len(set(announced))
    assert "reachability_check_failures_total" in sample_families


def test_failures_total_has_a_zero_series_for_every_failure_verdict_of_the_kind() -> None:
    store, registry = make_store()
    store.record(check(store, "web", "page"), finished(Verdict.OK, 1.0))
    labels = {"service": "web", "check": "page", "kind": "http"}
    for verdict in failure_verdicts("http"):
        got = registry.get_sample_value(
            "reachability_check_failures_total", {**labels, "verdict": str(verdict)}
        )
        assert got == 0.0, verdict
    store.record(check(store, "web", "page"), finished(Verdict.HTTP_STATUS, 2.0))
    assert (
        registry.get_sample_value(
            "reachability_check_failures_total", {**labels, "verdict": "http_status"}
        )
        == 1.0
    )
    text = store.exposition().decode()
    assert 'check="page",kind="http",verdict="ok"' not in text.replace("check_verdict", "")


def test_every_kind_can_fail_in_error_and_only_in_failure_verdicts() -> None:
    for kind in REGISTRY:
        verdicts = failure_verdicts(kind)
        assert Verdict.ERROR in verdicts and Verdict.OK not in verdicts, kind


def test_metric_names_are_written_out_once_in_metricnames_and_documented() -> None:
    families = [v for v in vars(metricnames).values() if isinstance(v, metricnames.Family)]
    names = [f.name for f in families]
    assert len(names) == len(set(names))
    readme = (REPO / "README.md").read_text()
    for name in names:
        assert f"`{name}`" in readme, f"{name} missing from the README's metric table"
    # No other module of the package spells or assembles a reachability_* metric name.
    for path in (REPO / "exporter").rglob("*.py"):
        if path.name == "metricnames.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                spelled = node.value in names or node.value in ("reachability", "reachability_")
                assert not spelled, (path, node.value)
    exposed = set(re.findall(r"^# TYPE (\S+)", busy_store().exposition().decode(), re.M))
    assert {n for n in exposed if n.startswith("reachability_")} == set(names)
