"""The Grafana dashboards: generated files up to date, importable (UI and provisioning),
templated datasource, well-formed layout, and every query accepted by a real Prometheus
(whether the queries return data is tests/test_prometheus_integration.py's job)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from exporter.verdicts import Verdict
from peers import REPO
from peers import prometheus_harness as ph

HERE = REPO / "dashboards"
FILES = sorted(HERE.glob("*.json"))
DS = {"type": "prometheus", "uid": "${datasource}"}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate", HERE / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATE = load_generator()


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def test_committed_dashboards_are_what_generate_py_produces() -> None:
    assert {p.name for p in FILES} == set(GENERATE.DASHBOARDS)
    for name, build in GENERATE.DASHBOARDS.items():
        assert (HERE / name).read_text() == GENERATE.render(build), (
            f"{name} is stale: run python dashboards/generate.py"
        )


def test_dashboard_verdicts_are_the_exporters_verdicts() -> None:
    assert set(GENERATE.VERDICTS) == {str(v) for v in Verdict}
    codes = [code for code, _, _ in GENERATE.VERDICTS.values()]
    assert len(codes) == len(set(codes)), "each verdict needs its own colour code"


def test_uids_are_unique_and_stable() -> None:
    uids = [load(p)["uid"] for p in FILES]
    assert len(set(uids)) == len(uids)
    assert all(uid.startswith("reachability-") for uid in uids)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_importable_through_the_ui_and_by_provisioning(path: Path) -> None:
    dashboard = load(path)
    # UI import asks for the datasource (__inputs) and writes it into the variable.
    (ds_input,) = dashboard["__inputs"]
    assert ds_input["name"] == "DS_PROMETHEUS" and ds_input["pluginId"] == "prometheus"
    assert dashboard["id"] is None  # an id from another Grafana would clash
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "vantage", "instance", "service"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["datasource"]["current"]["value"] == "${DS_PROMETHEUS}"
    # Provisioning ignores __inputs: nothing else may refer to DS_PROMETHEUS.
    text = json.dumps({**dashboard, "__inputs": None, "templating": None})
    assert "DS_PROMETHEUS" not in text
    for name in ("job", "vantage", "instance", "service"):
        assert variables[name]["datasource"] == DS
        assert variables[name]["query"].startswith("label_values(")
    assert variables["vantage"]["includeAll"] and variables["vantage"]["allValue"] == ".*"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_job_and_instance_are_chosen_from_the_exporters_found(path: Path) -> None:
    """All jobs means the jobs that have reachability series: no allValue, which would
    turn `up{job=~"$job"}` into the up of every job of the Prometheus."""
    variables = {v["name"]: v for v in load(path)["templating"]["list"]}
    for name in ("job", "instance"):
        var = variables[name]
        assert var["query"].startswith("label_values(reachability_exporter_build_info"), name
        assert var["query"].endswith(f", {name})"), name
        assert var["multi"] and var["includeAll"] and "allValue" not in var, name
        assert var["current"]["value"] == ["$__all"], name
    assert 'job=~"$job"' in variables["instance"]["query"]
    assert 'instance=~"$instance"' in variables["service"]["query"]


SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
METRIC = re.compile(r"\b(reachability_[a-z_]+|process_[a-z_]+|up|scrape_duration_seconds)\b")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_query_is_filtered_by_job_and_instance_and_nothing_is_hard_coded(
    path: Path,
) -> None:
    dashboard = load(path)
    assert 'job="' not in json.dumps(dashboard), "a hard-coded job"
    for panel, target in targets(dashboard):
        expr = target["expr"]
        selectors = SELECTOR.findall(expr)
        assert selectors, panel["title"]
        for metric, matchers in selectors:
            for wanted in ('job=~"$job"', 'instance=~"$instance"', 'vantage=~"$vantage"'):
                assert wanted in matchers, f"{panel['title']}: {metric} without {wanted}"
        # A metric name not followed by its selector would escape the filter.
        bare = [m.group(1) for m in METRIC.finditer(expr) if expr[m.end() : m.end() + 1] != "{"]
        assert not bare, f"{panel['title']}: {bare} unfiltered"


def test_overview_shows_one_row_per_service_with_a_drill_down_to_its_checks() -> None:
    """61 checks in one 12-unit timeline were 6 px a row: the overview's timeline has a row
    per service, a link from each to the service dashboard, and each service's checks in a
    collapsed row repeated per service."""
    overview = load(HERE / "overview.json")
    timelines = {p["title"]: p for p in overview["panels"] if p["type"] == "state-timeline"}
    services = timelines["Verdict of every service"]
    assert "reachability_service_verdict" in services["targets"][0]["expr"]
    assert "reachability_check_verdict" not in json.dumps(list(timelines.values()))
    # Readable rows: at least half a grid unit (15 px) per service for SERVICES_SHOWN.
    rows_h = services["gridPos"]["h"] - GENERATE.TIMELINE_FRAME_H
    assert rows_h / GENERATE.SERVICES_SHOWN >= 0.5
    (link,) = services["fieldConfig"]["defaults"]["links"]
    assert link["url"].startswith("/d/reachability-service/?")
    for part in ("${job:queryparam}", "${instance:queryparam}", "${vantage:queryparam}",
                 "var-service=${__field.labels.service}", "${__url_time_range}"):  # fmt: skip
        assert part in link["url"], part
    assert load(HERE / "service.json")["uid"] == "reachability-service"
    (row,) = [p for p in overview["panels"] if p["type"] == "row" and p.get("repeat")]
    assert row["repeat"] == "service" and row["collapsed"]
    (checks,) = row["panels"]
    assert checks["type"] == "state-timeline"
    assert "reachability_check_verdict" in checks["targets"][0]["expr"]
    assert checks["gridPos"]["y"] == row["gridPos"]["y"] + 1


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_panel_and_query_uses_the_datasource_variable(path: Path) -> None:
    dashboard = load(path)
    for panel in all_panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"] == DS, panel["title"]
            assert panel["targets"], panel["title"]
    for panel, target in targets(dashboard):
        assert target["datasource"] == DS, panel["title"]
        assert target["expr"].strip(), panel["title"]
    for panel in all_panels(dashboard):
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_panels_have_unique_ids_and_do_not_overlap(path: Path) -> None:
    panels = load(path)["panels"]
    ids = [p["id"] for p in all_panels(load(path))]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                 for y in range(pos["y"], pos["y"] + pos["h"])}  # fmt: skip
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_each_dashboard_shows_what_the_issue_asks_for() -> None:
    def exprs(name: str) -> str:
        return " ".join(t["expr"] for _, t in targets(load(HERE / name)))

    def kinds(name: str) -> set[str]:
        return {p["type"] for p in load(HERE / name)["panels"]}

    assert {"state-timeline", "table", "bargauge", "stat"} <= kinds("overview.json")
    assert "reachability_vantage_state" in exprs("overview.json")
    assert "reachability_check_last_change_timestamp_seconds" in exprs("overview.json")
    service = exprs("service.json")
    for metric in ("reachability_check_phase_seconds", "reachability_check_latency_seconds_bucket",
                   "reachability_dns_answers", "reachability_dns_resolver_verdict",
                   "reachability_tls_cert_expiry_timestamp_seconds",
                   "reachability_transfer_rate_bytes_per_second", "reachability_transfer_bytes",
                   "reachability_check_failures_total"):  # fmt: skip
        assert metric in service, metric
    assert "by (vantage)" in exprs("vantages.json")
    health = exprs("exporter.json")
    for metric in ("reachability_exporter_scheduler_lag_seconds_bucket",
                   "reachability_exporter_config_last_reload_successful",
                   "reachability_check_runs_total", "process_cpu_seconds_total",
                   "process_resident_memory_bytes"):  # fmt: skip
        assert metric in health, metric


# ---- Every query parses, as Prometheus itself reads it -------------------------------------


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ph.Prometheus]:
    assert shutil.which("prometheus"), "prometheus is not installed (apt package prometheus)"
    work = tmp_path_factory.mktemp("prometheus-parse")
    with ph.Cleanup() as cleanup:
        yield cleanup.add_process(ph.Prometheus("parse", {"global": {}}, work))  # type: ignore[misc]


def all_queries() -> list[Any]:
    params = []
    for path in FILES:
        dashboard = load(path)
        for panel, target in targets(dashboard):
            label = f"{path.stem}: {panel['title']} [{target['refId']}]"
            params.append(pytest.param(target["expr"], id=label))
        for var in dashboard["templating"]["list"]:
            if var["type"] == "query":
                selector = var["query"].removeprefix("label_values(").rsplit(",", 1)[0]
                params.append(pytest.param(selector, id=f"{path.stem}: ${var['name']}"))
    return params


@pytest.mark.parametrize("expr", all_queries())
def test_every_query_parses(prometheus: ph.Prometheus, expr: str) -> None:
    for name, value in {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s",
                        "$service": "x", "$vantage": ".*", "$job": "x",
                        "$instance": "x"}.items():  # fmt: skip
        expr = expr.replace(name, value)
    prometheus.query(expr)  # raises with Prometheus' parse error
