"""Hostile web clients for the tests and benchmarks of the web side: connections that send
part of a request head and then wait (reconnecting when the server closes them, as a
slowloris attacker does), all from one thread with non-blocking sockets."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Iterator

PARTIAL_HEAD = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"


class HalfOpenFlood:
    """Keeps `count` connections to `port` open, each having sent PARTIAL_HEAD, opening at
    most `burst` every 10 ms (a burst beyond a server's backlog is only retried seconds
    later by the kernel: pacing fills the server faster)."""

    def __init__(self, port: int, count: int, host: str = "127.0.0.1", burst: int = 5) -> None:
        self.address = (host, port)
        self.count = count
        self.burst = burst
        self._pending = 0
        self.opened = 0
        self.closed_by_server = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="half-open flood", daemon=True)

    def __enter__(self) -> HalfOpenFlood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _open(self, selector: selectors.BaseSelector) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(self.address)
        selector.register(sock, selectors.EVENT_WRITE, "connecting")
        self.opened += 1

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        self._pending = self.count
        try:
            while not self._stop.is_set():
                for _ in range(min(self.burst, self._pending)):
                    self._open(selector)
                    self._pending -= 1
                for key, _ in selector.select(0.01):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        if key.data == "connecting":
                            sock.send(PARTIAL_HEAD)
                            selector.modify(sock, selectors.EVENT_READ, "waiting")
                            continue
                        if sock.recv(65536):
                            continue
                    except BlockingIOError:
                        continue
                    except OSError:
                        pass
                    # Closed by the server (or refused): open another in its place.
                    selector.unregister(sock)
                    sock.close()
                    self.closed_by_server += 1
                    self._pending += 1
        finally:
            for key in list(selector.get_map().values()):
                with contextlib.suppress(OSError):
                    key.fileobj.close()  # type: ignore[union-attr]
            selector.close()


@contextlib.contextmanager
def half_open(port: int, count: int) -> Iterator[HalfOpenFlood]:
    with HalfOpenFlood(port, count) as flood:
        deadline = time.monotonic() + 5
        while flood.opened < count and time.monotonic() < deadline:
            time.sleep(0.05)
        yield flood
