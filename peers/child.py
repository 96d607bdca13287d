"""Peers for the benchmarks, run in a child process so that the figures are the prober's own
CPU and memory (user + system of the benchmark process) and nothing of the servers'."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
from collections.abc import Callable, Iterator
from typing import Any

Serve = Callable[[multiprocessing.connection.Connection, tuple[str, str]], None]


@contextlib.contextmanager
def in_child(serve: Serve, cert_and_key: tuple[str, str]) -> Iterator[Any]:
    """Start `serve(pipe, cert_and_key)` in a child; yield what it sends first (its ports or
    URLs); stop it on exit. `serve` sends its addresses, then waits for any message. The
    certificate is issued here because trustme CAs live in this process's memory."""
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(child, cert_and_key))
    server.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        server.join(5)
        if server.is_alive():
            server.kill()
