"""The shipped rules and dashboards against a real Prometheus scraping real exporters that
probe loopback servers, healthy and censored; and the many-vantage setup (agents in agent
mode remote-writing to a receiver) with real processes."""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from peers import REPO
from peers import prometheus_harness as ph

DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "reachability.rules.yml"
DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))

# Per-service alerts: the ones the vantage state suppresses.
PER_SERVICE_ALERTS = {
    "ReachabilityServiceBlocked", "ReachabilityServiceBlockedOkElsewhere",
    "ReachabilityDNSRecordsRemoved", "ReachabilitySNIFiltering", "ReachabilityTransferStalled",
    "ReachabilityTransferThrottled", "ReachabilityCallsBlocked",
    "ReachabilityCertificateExpiring", "ReachabilityTLSFingerprintBlocked",
    "ReachabilityUploadStalled",
}  # fmt: skip

# What the lab below must make pending or firing: alert -> labels of one expected alert.
EXPECTED_ALERTS: dict[str, dict[str, str]] = {
    "ReachabilityServiceBlocked": {"instance": "e1", "service": "closed", "check": "tcp"},
    "ReachabilityServiceBlockedOkElsewhere": {"instance": "e1", "service": "closed"},
    "ReachabilityDNSRecordsRemoved": {"instance": "e1", "service": "lab", "resolver": "isp",
                                      "verdict": "dns_nxdomain"},
    "ReachabilitySNIFiltering": {"instance": "e1", "service": "lab", "check": "tls"},
    "ReachabilityTransferStalled": {"instance": "e1", "service": "lab", "check": "media"},
    "ReachabilityTransferThrottled": {"instance": "e1", "service": "lab", "check": "video"},
    "ReachabilityCallsBlocked": {"instance": "e1", "service": "lab", "check": "calls"},
    "ReachabilityTLSFingerprintBlocked": {"instance": "e1", "service": "lab",
                                          "check": "tls-shapes"},
    "ReachabilityUploadStalled": {"instance": "e1", "service": "lab", "check": "upload"},
    "ReachabilityCertificateExpiring": {"instance": "e1", "service": "lab", "check": "tls-ok"},
    "ReachabilityWhitelistMode": {"instance": "e2"},
    "ReachabilityVantageOffline": {"instance": "e3"},
    "ReachabilityConfigReloadFailed": {"instance": "e2"},
    "ReachabilityExporterDown": {"instance": "dead"},
}  # fmt: skip
# Alerts this lab cannot raise within a test, and why.
NOT_RAISED = {
    "ReachabilityResultsStale": "needs a check silent for 5 minutes (clamp_min 300s)",
}
NO_DATA_RULES = set(NOT_RAISED)  # an alert expression that is empty here, for that reason


# ---- The lab: loopback servers, three exporters, one Prometheus -------------------------------


@dataclass
class Lab:
    prometheus: ph.Prometheus
    exporters: dict[str, ph.Exporter]  # e1 online, e2 whitelist, e3 offline
    instance: dict[str, str]  # e1/e2/e3/dead -> host:port as Prometheus labels it
    work: Path


def exporter_config(ctx: dict[str, Any], services: dict[str, Any]) -> dict[str, Any]:
    return {
        # Short enough for several runs within the test; timeout must stay below interval.
        "defaults": {"interval": "2s", "timeout": "1500ms", "ca_file": ctx["ca_file"]},
        "resolvers": {"control": ctx["dns_control"], "isp": ctx["dns_isp"]},
        # The default bogons include 127.0.0.0/8; the lab's DNS answers are loopback.
        "bogons": ["0.0.0.0/8"],
        "services": services,
    }


def tcp(name: str, address: str) -> dict[str, str]:
    return {"name": name, "kind": "tcp", "target": address}


def lab_services(ctx: dict[str, Any]) -> dict[str, Any]:
    """e1: a vantage point that is online, with every kind of check and every failure."""
    return {
        "control": {"role": "control", "scope": "foreign", "checks": [tcp("tcp", ctx["tcp_ok"])]},
        "lab": {
            "checks": [
                # NXDOMAIN at the ISP resolver while the control resolves: records removed.
                {"name": "dns", "kind": "dns", "target": "lab.test", "resolvers": ["isp"]},
                tcp("tcp", ctx["tcp_ok"]),
                {"name": "web", "kind": "http", "target": ctx["http_ok"]},
                {"name": "tls", "kind": "tls", "target": ctx["tls"], "sni": "lab.test",
                 "control_sni": "ok.test"},
                {"name": "tls-ok", "kind": "tls", "target": ctx["tls"], "sni": "ok.test"},
                {"name": "media", "kind": "transfer", "target": ctx["stall"],
                 "min_bytes": "64KiB", "stall_timeout": "300ms"},
                {"name": "video", "kind": "transfer", "target": ctx["slow"],
                 "min_bytes": "4KiB", "min_rate": "1Mbit"},
                # Chrome's hello reset by its ALPS extension; our own and Firefox's pass.
                {"name": "tls-shapes", "kind": "tls", "target": ctx["tls_shapes"],
                 "sni": "ok.test", "fingerprints": ["chrome", "firefox"]},
                {"name": "upload", "kind": "transfer", "direction": "upload",
                 "target": ctx["upload_stall"], "min_bytes": "1MiB", "stall_timeout": "300ms"},
                {"name": "calls", "kind": "stun", "target": ctx["udp_silent"]},
                {"name": "quic", "kind": "quic", "target": ctx["udp_silent"]},
            ]
        },
        "closed": {"checks": [tcp("tcp", ctx["tcp_closed"])]},
        "broken": {"checks": [{"name": "web", "kind": "http", "target": ctx["http_500"]}]},
    }  # fmt: skip


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("prometheus-lab")
    with ph.Cleanup() as stack:
        ca = trustme.CA()
        ca_file = work / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        # Expires in a week: ReachabilityCertificateExpiring (< 14 days).
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=7)
        leaf = ca.issue_cert("ok.test", "lab.test", not_after=expires)
        tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.configure_cert(tls_context)

        servers: dict[str, Any] = {
            "tcp_ok": ph.TCPListener(),
            "http_ok": ph.StatusHTTP(200),
            "http_500": ph.StatusHTTP(500),
            "tls": ph.SNIFilteringTLS(tls_context, blocked={"lab.test"}),
            "stall": ph.StallingHTTP(),
            "tls_shapes": ph.FingerprintFilteringTLS(
                tls_context, needle=bytes.fromhex("44cd00050003026832")
            ),
            "upload_stall": ph.StallingUploadSink(),
            "slow": ph.ThrottledHTTP(),
            "udp_silent": ph.SilentUDP(),
            "dns_control": ph.DNSServer({"lab.test": "127.0.0.1"}),
            "dns_isp": ph.DNSServer({}),
        }
        for server in servers.values():
            stack.callback(server.close)
        ctx: dict[str, Any] = {
            name: getattr(s, "url", None) or s.address for name, s in servers.items()
        }
        ctx["stall"] = f"http://{servers['stall'].address}/large"
        ctx["slow"] = f"http://{servers['slow'].address}/large"
        ctx["upload_stall"] = f"http://{servers['upload_stall'].address}/upload"
        ctx["tcp_closed"] = f"127.0.0.1:{ph.free_port()}"
        ctx["ca_file"] = str(ca_file)

        configs = {
            "e1": lab_services(ctx),
            # Whitelist: the foreign control fails, the domestic one answers. "closed" works
            # here (so e1's failure is "blocked here, ok elsewhere"); "broken" fails and
            # must be suppressed.
            "e2": {
                "foreign": {"role": "control", "scope": "foreign",
                            "checks": [tcp("tcp", ctx["tcp_closed"])]},
                "domestic": {"role": "control", "scope": "domestic",
                             "checks": [tcp("tcp", ctx["tcp_ok"])]},
                "closed": {"checks": [tcp("tcp", ctx["tcp_ok"])]},
                "broken": {"checks": [{"name": "web", "kind": "http", "target": ctx["http_500"]}]},
            },
            # Offline: every control fails; the failing "closed" must be suppressed.
            "e3": {
                "foreign": {"role": "control", "scope": "foreign",
                            "checks": [tcp("tcp", ctx["tcp_closed"])]},
                "closed": {"checks": [tcp("tcp", ctx["tcp_closed"])]},
            },
        }  # fmt: skip
        exporters = {}
        for name, services in configs.items():
            path = work / f"{name}.yaml"
            path.write_text(json.dumps(exporter_config(ctx, services), indent=1))
            exporters[name] = ph.Exporter(name, path, work)
            stack.add_process(exporters[name])

        # e2 then gets a configuration it must reject: ReachabilityConfigReloadFailed.
        exporters["e2"].config.write_text("services: [this is not a mapping\n")
        ph.http_post(f"http://{exporters['e2'].address}/-/reload")

        instance = {name: e.address for name, e in exporters.items()}
        instance["dead"] = f"127.0.0.1:{ph.free_port()}"  # ReachabilityExporterDown
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(fast_rules(work))],
            "scrape_configs": [
                {"job_name": "reachability", "scrape_timeout": "900ms",
                 "static_configs": [{"targets": list(instance.values())}]},
            ],
        }  # fmt: skip
        prometheus = ph.Prometheus("prometheus", config, work)
        stack.add_process(prometheus)
        result = Lab(prometheus, exporters, instance, work)
        wait_for_data(prometheus)
        yield result


def fast_rules(work: Path) -> Path:
    """The shipped rules with the groups' own evaluation intervals (1m, 5m) removed, so that
    the recording rules run at the test's 1s like the alerts. Nothing else changes: `for:`
    is left as shipped and the tests look for pending alerts."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group.pop("interval", None)
    path = work / "reachability.rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def wait_for_data(prometheus: ph.Prometheus) -> None:
    """Until rates have two samples and every alert this lab raises is at least pending."""
    ph.wait_for(
        "two scrapes of check runs",
        lambda: prometheus.query("rate(reachability_check_runs_total[1m]) > 0"),
        timeout=40,
    )

    def alerts_up() -> bool:
        names = {a["labels"]["alertname"] for a in prometheus.alerts()}
        return set(EXPECTED_ALERTS) <= names

    # test_expected_alerts_become_pending_or_firing names any that are missing.
    with contextlib.suppress(AssertionError):
        ph.wait_for("the expected alerts", alerts_up, timeout=30)


# ---- Expressions --------------------------------------------------------------------------


def substitute(expr: str, *, service: str = "lab", vantage: str = ".*") -> str:
    """Grafana's variables as Grafana would fill them in for one concrete choice."""
    for name, value in {
        "$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h",
        "${datasource}": "", "$service": service, "$vantage": vantage,
        "$job": ".+", "$instance": ".+",
    }.items():  # fmt: skip
        expr = expr.replace(name, value)
    assert "$" not in expr, f"an unsubstituted variable in {expr}"
    return expr


def dashboard_queries() -> list[Any]:
    params = []
    for path in DASHBOARDS:
        top = json.loads(path.read_text())["panels"]
        # Panels inside collapsed rows too.
        for panel in [*top, *(inner for row in top for inner in row.get("panels", []))]:
            for target in panel.get("targets", []):
                label = f"{path.stem}: {panel['title']} [{target['refId']}]"
                params.append(pytest.param(target["expr"], id=label))
    return params


def rule_expressions() -> list[Any]:
    rules = yaml.safe_load(RULES.read_text())
    return [
        pytest.param(rule, id=rule.get("alert") or rule["record"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def query_until_data(prometheus: ph.Prometheus, expr: str, timeout: float = 10) -> list[Any]:
    prometheus.query(expr)  # a parse error fails here at once, with Prometheus' message
    return ph.wait_for(f"data from {expr}", lambda: prometheus.query(expr), timeout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("expr", dashboard_queries())
def test_every_dashboard_query_returns_data(lab: Lab, expr: str) -> None:
    query_until_data(lab.prometheus, substitute(expr))


def test_dashboard_variables_find_their_values(lab: Lab) -> None:
    """label_values(metric{...}, label) of each variable, asked the way Grafana asks."""
    for path in DASHBOARDS:
        for var in json.loads(path.read_text())["templating"]["list"]:
            if var["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"])
            assert match, var["query"]
            selector = substitute(match.group(1))
            series = lab.prometheus.api("series", **{"match[]": selector})
            assert series, f"{path.name}: variable {var['name']}: no series for {selector}"
            if var["name"] == "service":
                assert {"lab", "closed"} <= {s["service"] for s in series}


@pytest.mark.parametrize("rule", rule_expressions())
def test_every_rule_expression_returns_data(lab: Lab, rule: dict[str, Any]) -> None:
    name = rule.get("alert") or rule["record"]
    if name in NO_DATA_RULES:
        lab.prometheus.query(rule["expr"])  # it must still parse
        return
    query_until_data(lab.prometheus, rule["expr"])
    if "record" in rule:
        query_until_data(lab.prometheus, rule["record"])


def test_rules_evaluate_without_errors(lab: Lab) -> None:
    groups = lab.prometheus.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == len(rule_expressions())
    broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not broken


def alerts_by_name(lab: Lab) -> dict[str, list[dict[str, Any]]]:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for alert in lab.prometheus.alerts():
        by_name.setdefault(alert["labels"]["alertname"], []).append(alert)
    return by_name


def test_expected_alerts_become_pending_or_firing(lab: Lab) -> None:
    def missing() -> dict[str, dict[str, str]]:
        by_name = alerts_by_name(lab)
        absent = {}
        for name, want in EXPECTED_ALERTS.items():
            want = {k: lab.instance.get(v, v) if k == "instance" else v for k, v in want.items()}
            if not any(want.items() <= a["labels"].items() for a in by_name.get(name, [])):
                absent[name] = want
        return absent

    still_missing = missing()
    if still_missing:  # give slow starters a little longer before failing
        ph.wait_for(f"alerts {still_missing}", lambda: not missing(), timeout=15)
    assert set(EXPECTED_ALERTS) | set(NOT_RAISED) == {
        r.get("alert") for r in (p.values[0] for p in rule_expressions()) if "alert" in r
    }, "every alert is either raised by the lab or listed in NOT_RAISED with a reason"


def test_annotations_render_in_plain_words(lab: Lab) -> None:
    for alert in lab.prometheus.alerts():
        for text in alert["annotations"].values():
            # A failed template or query in the annotation shows as one of these.
            for sign in ("expanding template", "<no value>", "verdict unknown", "unknown time"):
                assert sign not in text, text
    blocked = [
        a for a in alerts_by_name(lab)["ReachabilityServiceBlocked"]
        if a["labels"]["service"] == "closed"
    ]  # fmt: skip
    description = blocked[0]["annotations"]["description"]
    assert "with verdict tcp_refused since 20" in description, description


def test_per_service_alerts_are_suppressed_at_offline_and_whitelist_vantages(lab: Lab) -> None:
    quiet = {lab.instance["e2"], lab.instance["e3"]}
    # e2's "broken" and e3's "closed" fail for real...
    failing = lab.prometheus.query("reachability_check_success == 0")
    assert quiet <= {s["metric"]["instance"] for s in failing}
    # ...and raise no per-service alert.
    noisy = [
        a["labels"] for a in lab.prometheus.alerts()
        if a["labels"]["alertname"] in PER_SERVICE_ALERTS and a["labels"]["instance"] in quiet
    ]  # fmt: skip
    assert not noisy


# ---- Many vantage points: agents remote-writing to a receiver ------------------------------


@pytest.fixture(scope="module")
def central(lab: Lab) -> Iterator[ph.Prometheus]:
    """The shipped central.yml and agent.yml, pointed at loopback: agent a scrapes e1, agent
    b scrapes e2 (where "closed" works), both write to the receiver holding the rules."""
    work = lab.work
    with ph.Cleanup() as stack:
        central_config = yaml.safe_load((DEPLOY / "prometheus" / "central.yml").read_text())
        central_config["global"]["evaluation_interval"] = "1s"
        central_config["rule_files"] = [str(fast_rules(work))]
        central_config.pop("alerting")
        receiver = ph.Prometheus("central", central_config, work, receiver=True)
        stack.add_process(receiver)
        for vantage, exporter in (("a", "e1"), ("b", "e2")):
            agent_config = yaml.safe_load((DEPLOY / "prometheus" / "agent.yml").read_text())
            agent_config["global"]["scrape_interval"] = "1s"
            agent_config["global"]["external_labels"]["vantage"] = vantage
            agent_config["scrape_configs"] = [
                {"job_name": "reachability",
                 "static_configs": [{"targets": [lab.instance[exporter]]}]},
            ]  # fmt: skip
            agent_config["remote_write"][0]["url"] = f"{receiver.url}/api/v1/write"
            # Send within a second instead of the default five.
            agent_config["remote_write"][0]["queue_config"] = {"batch_send_deadline": "1s"}
            stack.add_process(ph.Prometheus(f"agent-{vantage}", agent_config, work, agent=True))
        yield receiver


def test_receiver_holds_every_vantage(central: ph.Prometheus) -> None:
    def vantages() -> set[str]:
        result = central.query("count by (vantage) (reachability_exporter_build_info)")
        return {s["metric"].get("vantage", "") for s in result}

    ph.wait_for("vantages a and b at the receiver", lambda: vantages() == {"a", "b"}, 30)


def test_receiver_alerts_blocked_here_ok_elsewhere(central: ph.Prometheus) -> None:
    def blocked_at_a() -> bool:
        return any(
            a["labels"]["alertname"] == "ReachabilityServiceBlockedOkElsewhere"
            and a["labels"].get("vantage") == "a"
            and a["labels"]["service"] == "closed"
            and "while it passes at vantage b." in a["annotations"]["description"]
            for a in central.alerts()
        )

    ph.wait_for("ServiceBlockedOkElsewhere for vantage a", blocked_at_a, 30)


@pytest.mark.parametrize("expr", dashboard_queries())
def test_every_dashboard_query_returns_data_per_vantage(central: ph.Prometheus, expr: str) -> None:
    query_until_data(central, substitute(expr, vantage="a|b"), timeout=30)
