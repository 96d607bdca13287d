"""The vantage state is never declared on part of the evidence (README, "Vantage state")."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from exporter.vantage import vantage_state
from exporter.verdicts import VantageState
from peers.exporterproc import ExporterProcess
from peers.listeners import free_port


@pytest.mark.parametrize(
    ("controls", "expected"),
    [
        # Three of six controls answered, all down: the other three may still be up.
        (
            [("foreign", False), ("domestic", False), ("domestic", False),
             ("foreign", None), ("domestic", None), ("domestic", None)],
            VantageState.UNKNOWN,
        ),
        ([("foreign", False), ("domestic", None)], VantageState.UNKNOWN),
        ([("foreign", False), ("domestic", True), ("foreign", None)], VantageState.UNKNOWN),
        ([("domestic", False), ("domestic", None)], VantageState.UNKNOWN),
        ([("domestic", True), ("domestic", None)], VantageState.UNKNOWN),
        # One reachable foreign control settles it whatever the others say.
        ([("foreign", True), ("domestic", None), ("foreign", None)], VantageState.ONLINE),
        # Once every control has a result, the state is declared.
        ([("foreign", False), ("domestic", False), ("domestic", True)], VantageState.WHITELIST),
        ([("foreign", False), ("foreign", False), ("domestic", False)], VantageState.OFFLINE),
    ],
)  # fmt: skip
def test_vantage_state_waits_for_every_control_unless_a_foreign_one_is_up(
    controls: list[tuple[str, bool | None]], expected: VantageState
) -> None:
    assert vantage_state(controls) == expected


def test_running_exporter_says_unknown_until_the_slow_control_answers(tmp_path: Path) -> None:
    """The first control refuses at once; the second (a TLS server that never answers) takes
    its whole timeout. Until it has a result, the state is unknown, never offline."""
    silent = socket.socket()  # completes TCP handshakes, never answers a ClientHello
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    path = tmp_path / "config.yaml"
    path.write_text(
        "defaults: {interval: 10s, timeout: 3s}\nbogons: []\nservices:\n"
        f"  refusing:\n    role: control\n    checks:\n"
        f'      - {{name: tcp, kind: tcp, target: "127.0.0.1:{free_port()}"}}\n'
        f"  slow:\n    role: control\n    scope: domestic\n    checks:\n"
        f'      - {{name: tls, kind: tls, target: "127.0.0.1:{silent.getsockname()[1]}"}}\n'
    )
    exporter = ExporterProcess(path).start()
    try:
        exporter.wait_for(lambda: exporter.verdict("refusing", "tcp") == "tcp_refused")
        assert exporter.verdict("slow", "tls") is None
        assert exporter.value("reachability_vantage_state", state="unknown") == 1.0
        exporter.wait_for(lambda: exporter.verdict("slow", "tls"), timeout=15)
        assert exporter.value("reachability_vantage_state", state="offline") == 1.0
        vantage = [r for r in json.loads(exporter.get("/api/v1/changes")[1])["records"]
                   if r["type"] == "vantage"]  # fmt: skip
        assert [(r["from"], r["to"]) for r in vantage] == [("unknown", "offline")]
    finally:
        exporter.stop()
        silent.close()
