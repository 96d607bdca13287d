"""The lab's scenario catalogue and exporter config, checked without root: the config is one
the exporter accepts, every expectation names a real check and verdict, and together the
scenarios produce every verdict a network can cause. (tests/test_lab.py proves them.)"""

from __future__ import annotations

import shlex
from pathlib import Path

from exporter.config import load_text
from exporter.verdicts import VantageState, Verdict
from lab import labconfig, scenarios
from lab.net import Lab
from peers import certs


def test_lab_config_is_valid_and_has_exactly_the_lab_checks(tmp_path: Path) -> None:
    lab = Lab("rxdoc-", tmp_path)
    certs.ca().cert_pem.write_to_path(str(lab.path("ca.pem")))
    config = load_text(labconfig.render(lab, ports={"doh_port": 443, "dot_port": 853}))
    checks = {f"{check.service}/{check.name}" for check in config.checks()}
    assert checks == set(labconfig.CHECKS)
    assert {s.role for s in config.services.values()} == {"service", "control"}
    assert not any(n.network_address.packed[0] == 10 for n in config.bogons)


def test_expectations_name_real_checks_verdicts_and_states() -> None:
    known = {str(v) for v in Verdict}
    for scenario in scenarios.SCENARIOS:
        assert set(scenario.verdicts()) == set(labconfig.CHECKS), scenario.name
        assert set(scenario.verdicts().values()) <= known, scenario.name
        assert set(scenario.resolver_verdicts()) == set(labconfig.RESOLVERS), scenario.name
        assert set(scenario.resolver_verdicts().values()) <= known, scenario.name
        assert scenario.vantage in {str(s) for s in VantageState}, scenario.name
        for rule in (*scenario.filter, *scenario.nat):
            assert shlex.split(rule), scenario.name
    assert len(scenarios.BY_NAME) == len(scenarios.SCENARIOS)


def test_every_verdict_a_network_can_cause_is_produced_by_a_scenario() -> None:
    produced = {verdict for s in scenarios.SCENARIOS for verdict in s.verdicts().values()}
    produced |= {verdict for s in scenarios.SCENARIOS for verdict in s.resolver_verdicts().values()}
    # `error` is the exporter failing itself; no network condition may cause it.
    assert produced == {str(v) for v in Verdict} - {"error"}
    assert {s.vantage for s in scenarios.SCENARIOS} == {"online", "whitelist", "offline"}


def test_the_proxy_reaches_what_the_censor_blocks() -> None:
    blocked = scenarios.BY_NAME["ip-block"].verdicts()
    assert blocked["messenger/web"] == "tcp_timeout"
    assert blocked["vpn/web"] == blocked["vpn/media"] == "ok"
