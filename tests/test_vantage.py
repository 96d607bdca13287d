"""The vantage state is never declared on part of the evidence (README, "Vantage state")."""

from __future__ import annotations

import pytest

from exporter.vantage import vantage_state
from exporter.verdicts import VantageState


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
