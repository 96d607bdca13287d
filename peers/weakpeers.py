"""Peers that are weak rather than hostile, for testing that the exporter's own bursts do not
overrun them: a DNS forwarder with a small queue (a home router), and a TCP server that
counts how many connections are open at once."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator

import dns.message
import dns.rcode


class WeakResolver:
    """Plain DNS over UDP on loopback that answers NXDOMAIN to every name after `delay`, but
    holds at most `queue` unanswered queries and drops the rest, as a forwarder with a small
    table does (dnsmasq's dns-forward-max, a home router's NAT table)."""

    def __init__(self, queue: int = 10, delay: float = 0.05) -> None:
        self.queue = queue
        self.delay = delay
        self.answered = 0
        self.dropped = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"udp://127.0.0.1:{self.port}"

    def __enter__(self) -> WeakResolver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()

    def _serve(self) -> None:
        pending: list[tuple[float, bytes, object]] = []  # (due, reply, address), by due
        while not self._stop.is_set():
            wait = max(0.0, pending[0][0] - time.monotonic()) if pending else 0.1
            readable, _, _ = select.select([self._sock], [], [], min(wait, 0.1))
            if readable:
                wire, address = self._sock.recvfrom(65535)
                if len(pending) >= self.queue:
                    self.dropped += 1
                else:
                    reply = dns.message.make_response(dns.message.from_wire(wire))
                    reply.set_rcode(dns.rcode.NXDOMAIN)
                    pending.append((time.monotonic() + self.delay, reply.to_wire(), address))
            while pending and pending[0][0] <= time.monotonic():
                _, reply_wire, address = pending.pop(0)
                self._sock.sendto(reply_wire, address)
                self.answered += 1


@contextlib.contextmanager
def counting_server() -> Iterator[tuple[int, dict[str, int]]]:
    """A TCP port that accepts connections and never says a word (a TLS handshake to it
    stalls until the client's timeout); yields the port and counters: `open` now and `most`
    open at once. Closed connections are reaped just before each accept: a client that
    closes one connection before opening the next has its FIN queued ahead of the new SYN,
    so the count never depends on how quickly a thread of ours runs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.settimeout(0.2)
    counts = {"open": 0, "most": 0}
    stop = threading.Event()
    held: list[socket.socket] = []

    def closed_by_peer(conn: socket.socket) -> bool:
        while True:
            try:
                if not conn.recv(65536):
                    return True
            except BlockingIOError:
                return False
            except OSError:
                return True

    def reap() -> None:
        readable = select.select(held, [], [], 0)[0] if held else []
        for conn in readable:
            if closed_by_peer(conn):
                held.remove(conn)
                conn.close()
        counts["open"] = len(held)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                reap()
                continue
            except OSError:
                return
            conn.setblocking(False)
            reap()
            held.append(conn)
            counts["open"] = len(held)
            counts["most"] = max(counts["most"], counts["open"])
        for conn in held:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], counts
    finally:
        stop.set()
        thread.join()
        sock.close()
