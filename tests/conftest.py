"""Fixtures shared by the tests that need plain TCP endpoints on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from peers.listeners import accepting_port, free_port


@pytest.fixture
def listener() -> Iterator[int]:
    """A port that accepts (and closes) every connection."""
    with accepting_port() as port:
        yield port


@pytest.fixture
def closed_port() -> int:
    """A port nobody listens on: connecting is refused."""
    return free_port()
