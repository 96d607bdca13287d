"""How a probe shares its time among a target's addresses: each gets an equal share of what
is left, so that one silent address cannot use up the time of those after it."""

from __future__ import annotations

import asyncio


def address_deadline(deadline: float, addresses_left: int) -> float:
    """The deadline for the next of `addresses_left` addresses (event-loop time)."""
    now = asyncio.get_running_loop().time()
    return now + max(deadline - now, 0.0) / max(addresses_left, 1)
