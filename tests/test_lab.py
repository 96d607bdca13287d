"""End to end in the censorship lab: the real exporter (`python -m exporter`) runs in the
client namespace; each scenario puts censor rules in force, and the verdicts of every check
and the vantage state read from /metrics must become exactly the scenario's, then return to
ok when the rules are lifted. Needs root (network namespaces, iptables, tc)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import control, net, scenarios, topology
from lab.control import Exporter, Snapshot
from lab.labconfig import CHECKS
from lab.net import Lab

# Namespaces and a state directory of this test run's own (by pid), so that a user's lab
# (rxlab-) and a concurrent run are left alone; a run killed half-way is cleaned up by the
# next (see _remove_stale_labs).
TEST_PREFIX = "rxt"
TEST_LAB = Lab(f"{TEST_PREFIX}{os.getpid()}-", Path(f"/run/rxlab-test-{os.getpid()}"))
INTERVAL, TIMEOUT = "2s", "1500ms"
# A verdict changes at the latest one interval plus one timeout after a rule changes; the
# rest is slack for a loaded CI machine.
CHANGE_WITHIN = 2.0 + 1.5 + 6.0
CLEAN_ROUNDS = 20


def _lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, iptables, tc)"
    for tool in ("ip", "iptables", "tc"):
        if shutil.which(tool) is None:
            return f"the lab needs {tool}"
    return None


pytestmark = pytest.mark.skipif(_lab_unavailable() is not None, reason=str(_lab_unavailable()))


def _remove_stale_labs() -> None:
    """Labs left by test runs that died without cleaning up (their pid is gone)."""
    for netns in net.existing_namespaces():
        found = re.fullmatch(rf"{TEST_PREFIX}(\d+)-client", netns)
        if found is None or Path(f"/proc/{found[1]}").exists():
            continue
        control.down(Lab(f"{TEST_PREFIX}{found[1]}-", Path(f"/run/rxlab-test-{found[1]}")))


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    """The lab with the exporter running on a clean network; torn down whatever happens."""
    _remove_stale_labs()
    try:
        config = control.up(TEST_LAB, INTERVAL, TIMEOUT)
        running = Exporter(TEST_LAB, config).start()
        clean = scenarios.BY_NAME["clean"]
        if _settle(running, clean) is None:
            pytest.fail(f"the clean lab never became all ok: {_diff(running, clean)}")
        yield running
        running.stop()
    finally:
        control.down(TEST_LAB)
        control.down(TEST_LAB)  # idempotent: a second down finds nothing and says nothing
        assert not set(TEST_LAB.namespaces) & net.existing_namespaces()
        assert not Path("/etc/netns", TEST_LAB.client).exists()
        assert not TEST_LAB.state.exists()


def _matches(snap: Snapshot, scenario: scenarios.Scenario) -> bool:
    return (
        snap.verdicts == scenario.verdicts()
        and snap.resolvers == scenario.resolver_verdicts()
        and snap.vantage == scenario.vantage
    )


def _settle(exporter: Exporter, scenario: scenarios.Scenario) -> Snapshot | None:
    def matched() -> Snapshot | None:
        snap = exporter.snapshot()
        return snap if _matches(snap, scenario) else None

    return control.wait_for(matched, CHANGE_WITHIN)


def _diff(exporter: Exporter, scenario: scenarios.Scenario) -> str:
    snap = exporter.snapshot()
    wrong = {
        check: f"{snap.verdicts.get(check)} (expected {verdict})"
        for check, verdict in scenario.verdicts().items()
        if snap.verdicts.get(check) != verdict
    }
    for key, verdict in scenario.resolver_verdicts().items():
        if snap.resolvers.get(key) != verdict:
            wrong[key] = f"{snap.resolvers.get(key)} (expected {verdict})"
    return f"{wrong}, vantage {snap.vantage} (expected {scenario.vantage})"


def _evidence(exporter: Exporter, key: str) -> dict[str, Any]:
    """The last run's evidence of one check ("service/check"), from /api/v1/status."""
    service_name, check_name = key.split("/")
    status = json.loads(exporter.get("/api/v1/status")[1])
    for service in status["services"]:
        for check in service["checks"]:
            if service["name"] == service_name and check["name"] == check_name:
                evidence = check["evidence"]
                assert isinstance(evidence, dict)
                return evidence
    raise AssertionError(f"{key} not in /api/v1/status")


def test_clean_network_gives_no_false_positive_in_20_rounds(exporter: Exporter) -> None:
    first = exporter.snapshot()
    assert set(first.runs) == set(CHECKS)
    deadline = time.monotonic() + (CLEAN_ROUNDS + 2) * 2.0 + 10
    seen: set[tuple[str, str]] = set()
    while True:
        snap = exporter.snapshot()
        seen |= {(check, v) for check, v in snap.verdicts.items() if v != "ok"}
        rounds = min(snap.runs[check] - first.runs[check] for check in CHECKS)
        if rounds >= CLEAN_ROUNDS or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert rounds >= CLEAN_ROUNDS, f"only {rounds} rounds of every check"
    assert not seen, f"non-ok verdicts on a clean network: {sorted(seen)}"
    assert snap.failures == first.failures, "a failed run on a clean network"
    assert snap.vantage == "online"


@pytest.mark.parametrize("name", [s.name for s in scenarios.SCENARIOS if s.name != "clean"])
def test_scenario_gives_exact_verdicts_then_recovers(exporter: Exporter, name: str) -> None:
    scenario = scenarios.BY_NAME[name]
    try:
        scenarios.apply(TEST_LAB, scenario)
        if _settle(exporter, scenario) is None:
            pytest.fail(f"{name}: {_diff(exporter, scenario)}\n{exporter.logs()[-3000:]}")
        snap = exporter.snapshot()
        if name == "freeze-16k":
            # The freeze lets about 16 KB through, TLS framing included.
            received = snap.transfer_bytes["messenger/media"]
            assert 4 * 1024 <= received <= 16 * 1024, received
        if name == "packets-reply":
            # Cut after a number of packets, not of bytes: the client never saw more than
            # 25 segments from the server, whatever their size (freeze-16k cuts at 16 KB).
            for check in ("messenger/media", "messenger/upload"):
                evidence = _evidence(exporter, check)
                assert evidence["segments_received"] < scenarios.PACKET_LIMIT, evidence
            assert _evidence(exporter, "messenger/media")["bytes_received"] > 16 * 1024
        if name == "tls-fingerprint":
            shapes = _evidence(exporter, "messenger/tls")["fingerprints"]
            assert shapes == {"chrome": False, "firefox": True}, shapes
        if name == "throttle":
            rate = snap.transfer_rate["messenger/media"]
            assert 0 < rate * 8 < 200_000, f"{rate * 8:.0f} bit/s through a 128 kbit/s shaper"
    finally:
        scenarios.lift(TEST_LAB)
    clean = scenarios.BY_NAME["clean"]
    assert _settle(exporter, clean) is not None, f"{name} lifted, but: {_diff(exporter, clean)}"


def test_down_removes_a_lab_that_was_never_up() -> None:
    ghost = Lab("rxlabg-", Path("/run/rxlab-ghost"))
    control.down(ghost)
    assert not topology.is_up(ghost)
