"""The vantage state: what the control services say about this vantage point's network as a
whole, so that one blocked service is not confused with a network that is down or in
"whitelist mode" (only domestic, allowed destinations reachable)."""

from __future__ import annotations

from collections.abc import Iterable

from exporter.verdicts import VantageState

Control = tuple[str, bool | None]  # (scope, up) where up is None before every check has run


def vantage_state(controls: Iterable[Control]) -> VantageState:
    controls = list(controls)
    known = [(scope, up) for scope, up in controls if up is not None]
    if not known:
        return VantageState.UNKNOWN
    has_foreign = any(scope == "foreign" for scope, _ in controls)
    foreign_up = any(up for scope, up in known if scope == "foreign")
    domestic_up = any(up for scope, up in known if scope == "domestic")
    if has_foreign:
        if foreign_up:
            return VantageState.ONLINE
        # Until a foreign control has a result, online and whitelist cannot be told apart.
        if not any(scope == "foreign" for scope, _ in known):
            return VantageState.UNKNOWN
        return VantageState.WHITELIST if domestic_up else VantageState.OFFLINE
    return VantageState.ONLINE if domestic_up else VantageState.OFFLINE
