"""The vantage state: what the control services say about this vantage point's network as a
whole, so that one blocked service is not confused with a network that is down or in
"whitelist mode" (only domestic, allowed destinations reachable)."""

from __future__ import annotations

from collections.abc import Iterable

from exporter.verdicts import VantageState

Control = tuple[str, bool | None]  # (scope, up) where up is None before every check has run


def vantage_state(controls: Iterable[Control]) -> VantageState:
    """The state the README describes. Only a reachable foreign control settles it early:
    everything else waits until every control has a result, since a control that has not
    answered yet may still be the one that is up (the shipped config once read `offline`
    1.5 s after start, with 3 of 6 controls answered)."""
    controls = list(controls)
    if not controls:
        return VantageState.UNKNOWN
    has_foreign = any(scope == "foreign" for scope, _ in controls)
    if any(up for scope, up in controls if scope == "foreign"):
        return VantageState.ONLINE
    if any(up is None for _, up in controls):
        return VantageState.UNKNOWN
    domestic_up = any(up for scope, up in controls if scope == "domestic")
    if has_foreign:
        return VantageState.WHITELIST if domestic_up else VantageState.OFFLINE
    return VantageState.ONLINE if domestic_up else VantageState.OFFLINE
