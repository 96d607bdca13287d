"""The Prometheus rules, Prometheus configurations and Alertmanager example in deploy/, checked
by the tools that will load them, and the inhibit rules exercised on a real Alertmanager."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from peers import REPO
from peers import prometheus_harness as ph

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "reachability.rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "reachability.rules.test.yml"
ALERTMANAGER = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
SAY_WHEN_OTHERWISE = {"ReachabilityCertificateExpiring", "ReachabilityResultsStale"}


def tool(name: str) -> str:
    """CI installs prometheus and prometheus-alertmanager: missing tools fail, never skip."""
    path = shutil.which(name)
    assert path, f"{name} is not installed (apt packages prometheus, prometheus-alertmanager)"
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60)


def test_rules_pass_promtool_check_with_every_lint() -> None:
    result = run(tool("promtool"), "check", "rules", "--lint=all", "--lint-fatal", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = run(tool("promtool"), "test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_unit_tests() -> None:
    """Every alert appears in the unit tests, both firing (in exp_alerts) and not."""
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    checks = [
        check for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for check in test.get("alert_rule_test", [])
    ]  # fmt: skip
    firing = {c["alertname"] for c in checks if c["exp_alerts"]}
    quiet = {c["alertname"] for c in checks if not c["exp_alerts"]}
    assert alerts - firing == set()
    assert alerts - quiet == set()


def test_every_alert_names_service_check_and_since_when() -> None:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert {"summary", "description"} <= rule["annotations"].keys()
            # Symptoms of a check say since when (expiry and staleness say when instead).
            about_a_check = "$labels.service" in rule["annotations"]["summary"]
            if about_a_check and rule["alert"] not in SAY_WHEN_OTHERWISE:
                since = "reachability_check_last_change_timestamp_seconds"
                assert since in rule["annotations"]["description"], rule["alert"]


@pytest.mark.parametrize(
    ("config", "agent"),
    [("prometheus.yml", False), ("central.yml", False), ("agent.yml", True)],
)
def test_prometheus_configs_pass_promtool(config: str, agent: bool) -> None:
    args: list[str | Path] = ["check", "config", *(["--agent"] if agent else [])]
    result = run(tool("promtool"), *args, PROMETHEUS_DIR / config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_example_passes_amtool() -> None:
    result = run(tool("amtool"), "check-config", ALERTMANAGER)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- Inhibition on a real Alertmanager ----------------------------------------------------


class Alertmanager(ph.Process):
    def __init__(self, work: Path) -> None:
        config = yaml.safe_load(ALERTMANAGER.read_text())
        # Nothing listens there: a notification, were one sent, goes nowhere.
        config["receivers"][0]["webhook_configs"][0]["url"] = f"http://127.0.0.1:{ph.free_port()}/"
        config_file = work / "alertmanager.yml"
        config_file.write_text(json.dumps(config))
        self.url = f"http://127.0.0.1:{ph.free_port()}"
        args = [tool("prometheus-alertmanager"), f"--config.file={config_file}",
                f"--storage.path={work / 'am-data'}", f"--web.listen-address={self.url[7:]}",
                "--cluster.listen-address=", "--log.level=warn"]  # fmt: skip
        super().__init__("alertmanager", args, work)
        self.wait_ready(f"{self.url}/-/ready")

    def post(self, *alerts: dict[str, str]) -> None:
        body = json.dumps([{"labels": labels} for labels in alerts]).encode()
        assert ph.http_post(f"{self.url}/api/v2/alerts", body) == 200

    def status(self, labels: dict[str, str]) -> dict[str, Any]:
        _, body = ph.http_get(f"{self.url}/api/v2/alerts")
        for alert in json.loads(body):
            if alert["labels"] == labels:
                return dict(alert["status"])
        raise KeyError(labels)


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    with ph.Cleanup() as cleanup:
        yield cleanup.add_process(Alertmanager(tmp_path))  # type: ignore[misc]


E1 = {"instance": "localhost:9869", "job": "reachability", "vantage": "a"}
E2 = {**E1, "vantage": "b"}


def blocked(alertname: str, exporter: dict[str, str], check: str = "chat") -> dict[str, str]:
    return {"alertname": alertname, **exporter, "service": "whatsapp", "check": check,
            "kind": "tcp", "severity": "warning"}  # fmt: skip


@pytest.mark.parametrize(
    ("source", "target", "unaffected"),
    [
        pytest.param(
            {"alertname": "ReachabilityVantageOffline", **E1, "state": "offline"},
            blocked("ReachabilityServiceBlocked", E1),
            blocked("ReachabilityServiceBlocked", E2),
            id="offline-vantage-silences-its-service-alerts",
        ),
        pytest.param(
            {"alertname": "ReachabilityWhitelistMode", **E1, "state": "whitelist"},
            blocked("ReachabilityTransferStalled", E1),
            blocked("ReachabilityTransferStalled", E2),
            id="whitelist-vantage-silences-its-service-alerts",
        ),
        pytest.param(
            blocked("ReachabilityServiceBlockedOkElsewhere", E1),
            blocked("ReachabilityServiceBlocked", E1),
            blocked("ReachabilityServiceBlocked", E1, check="web"),
            id="blocked-here-ok-elsewhere-replaces-plain-blocked",
        ),
        pytest.param(
            blocked("ReachabilitySNIFiltering", E1),
            blocked("ReachabilityServiceBlocked", E1),
            blocked("ReachabilityServiceBlocked", E2),
            id="specific-symptom-replaces-plain-blocked",
        ),
        pytest.param(
            {"alertname": "ReachabilityExporterDown", **E1},
            blocked("ReachabilityResultsStale", E1),
            {"alertname": "ReachabilityVantageOffline", **E2, "state": "offline"},
            id="exporter-down-silences-stale-results",
        ),
    ],
)
def test_inhibit_rules(
    alertmanager: Alertmanager,
    source: dict[str, str],
    target: dict[str, str],
    unaffected: dict[str, str],
) -> None:
    alertmanager.post(source, target, unaffected)
    ph.wait_for(
        f"{target['alertname']} inhibited",
        lambda: alertmanager.status(target)["state"] == "suppressed",
        timeout=10,
    )
    assert alertmanager.status(target)["inhibitedBy"]
    assert alertmanager.status(unaffected)["state"] == "active"
    assert alertmanager.status(source)["state"] == "active"
