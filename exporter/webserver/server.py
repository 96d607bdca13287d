"""The web server, on the exporter's own event loop: one accept loop per listening socket,
at most `max_connections` open connections (further clients wait in the kernel's backlog),
and, when every slot is taken, a newcomer that has sent an unfinished request head is closed
at once, and for any other the connection that has waited longest for a request head is
closed to make room, so clients that never finish a request cannot lock Prometheus out.
Work that takes CPU (bcrypt, rendering pages, gzip) runs in small thread pools. The plain
exposition is written from the loop a window of pre-rendered pieces at a time (joining
shared text, no rendering), so the probes get the loop back between windows."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Callable

from exporter.app import Exporter
from exporter.webconfig import WebConfig
from exporter.webserver.connection import Connection
from exporter.webserver.reply import Reply, Request
from exporter.webserver.routes import Router

DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_TELEMETRY_PATH = "/metrics"
# The kernel queues this many connections we have not accepted yet (Python's default of 5
# dropped the SYNs of 136 of 200 clients connecting at once).
BACKLOG = 1024
# Two bcrypt checks at once use both cores of a small machine; more would only queue there.
AUTH_THREADS = 2
# Renderings of /metrics and of the pages; identical requests share one (routes.py).
RENDER_THREADS = 2
# Out of descriptors or memory while accepting: wait this long before the next try, rather
# than spin on a listening socket that stays readable.
ACCEPT_BACKOFF = 0.1
# With every slot taken, the connection that has waited longest for a request head is
# closed to make room, at most this many a second (a token bucket): clients that reconnect
# as fast as they are closed then cost a bounded share of the loop, and a backlog of 1,024
# of them is worked through in about half a second, so that a real scrape behind them is
# answered in time.
EVICTIONS_PER_SECOND = 2000
EVICTION_BURST = 64
# Out of tokens, wait for this many before evicting again: one turn of the loop per batch,
# not one per eviction (a turn takes milliseconds under a flood).
EVICTION_BATCH = 16
EVICT_AFTER_TURNS = 2
# Connections accepted in one turn of the loop at most.
ACCEPT_BATCH = 64
# With every slot taken, a new plain-HTTP connection whose client has sent part of a request
# head and stopped is closed at once instead of evicting a waiting one: it has asked for
# nothing yet and would only wait its turn to be evicted. That costs one accept, one peek and
# one close, no connection object, reader or timer: this share of an eviction's tokens.
SHED_COST = 0.25
# Enough of a head to see whether it is complete (MAX_HEAD in connection.py is the bound).
PEEK_BYTES = 16 * 1024 + 1
_ACCEPT_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

log = logging.getLogger(__name__)


def parse_listen_address(address: str) -> tuple[str, int]:
    """`:9869`, `0.0.0.0:9869`, `[::1]:9869`, `localhost:9869` → (host, port); an empty
    host listens on every address, IPv6 included where the system has it."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid listen address {address!r}: expected [host]:port")
    return host.strip("[]"), int(port)


def _listen(address: str) -> socket.socket:
    host, port = parse_listen_address(address)
    try:
        family = socket.AF_INET6 if (not host or ":" in host) else socket.AF_INET
        sock = _bind(family, host or "::", port)
    except OSError:
        if host:
            raise
        # No IPv6 on this host: all IPv4 addresses will do.
        sock = _bind(socket.AF_INET, "0.0.0.0", port)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def _bind(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class WebServer:
    """Binds at construction (so that a taken port fails before anything starts), serves
    from `start()` until `stop()`, both on the running loop. `web_config` is called for each
    connection and request, so a re-read web configuration applies without a restart."""

    def __init__(
        self,
        exporter: Exporter,
        addresses: list[str],
        web_config: Callable[[], WebConfig],
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        telemetry_path: str = DEFAULT_TELEMETRY_PATH,
        probe_runs: int = 8,
    ) -> None:
        self.web_config = web_config
        self.max_connections = max(1, max_connections)
        self.auth_pool: concurrent.futures.Executor = concurrent.futures.ThreadPoolExecutor(
            AUTH_THREADS, "web-auth"
        )
        self._render_pool = concurrent.futures.ThreadPoolExecutor(RENDER_THREADS, "web-render")
        self.router = Router(
            exporter, telemetry_path=telemetry_path, pool=self._render_pool, probe_runs=probe_runs
        )
        self._sockets: list[socket.socket] = []
        try:
            for address in addresses:
                self._sockets.append(_listen(address))
        except OSError:
            for sock in self._sockets:
                sock.close()
            raise
        self._accepting: list[asyncio.Task[None]] = []
        self._open: dict[Connection, None] = {}
        # Connections waiting for a request head, oldest first; the ones that may be closed
        # to make room. Dicts keep insertion order.
        self._waiting_first: dict[Connection, None] = {}
        self._waiting_again: dict[Connection, None] = {}
        self._room = asyncio.Event()
        # Turns of the accept loop; a connection is evicted only once its own reader has
        # had its turn (the accept loop runs before the readers in a turn of the loop).
        self._turn = 0
        self._tokens: float = EVICTION_BURST
        self._tokens_at = time.monotonic()

    @property
    def ports(self) -> list[int]:
        return [sock.getsockname()[1] for sock in self._sockets]

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def start(self) -> None:
        for sock in self._sockets:
            task = asyncio.create_task(self._accept_forever(sock), name=f"web accept {sock}")
            self._accepting.append(task)
            log.info("listening address=%s port=%s", *sock.getsockname()[:2])

    async def stop(self) -> None:
        for task in self._accepting:
            task.cancel()
        serving = [c.task for c in self._open if c.task is not None]
        for connection in list(self._open):
            connection.close()
        await asyncio.gather(*self._accepting, *serving, return_exceptions=True)
        for sock in self._sockets:
            sock.close()
        self.router.close()
        self.auth_pool.shutdown(wait=False, cancel_futures=True)
        self._render_pool.shutdown(wait=False, cancel_futures=True)

    # -- what connections report ---------------------------------------------------------------

    def waiting(self, connection: Connection) -> None:
        (self._waiting_again if connection.served else self._waiting_first)[connection] = None

    def working(self, connection: Connection) -> None:
        self._waiting_first.pop(connection, None)
        self._waiting_again.pop(connection, None)

    async def handle(self, request: Request) -> Reply:
        return await self.router.handle(request)

    # -- accepting -----------------------------------------------------------------------------

    async def _accept_forever(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._warned = False
        while True:
            await self._make_room()
            try:
                sock, _ = await loop.sock_accept(listening)
            except OSError as exc:
                await self._accept_failed(exc)
                continue
            self._admit(sock)
            # Take what else is queued in the same loop iteration: under a flood the loop
            # turns only every few milliseconds (the GIL is shared with the render threads),
            # and one accept per turn would leave real clients in the backlog for seconds.
            for _ in range(ACCEPT_BATCH - 1):
                if not self._room_now():
                    break
                try:
                    sock, _ = listening.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    await self._accept_failed(exc)
                    break
                sock.setblocking(False)
                self._admit(sock)
            # Yield, so that a flood of connections cannot keep the probes off the loop.
            await asyncio.sleep(0)
            self._turn += 1

    async def _accept_failed(self, exc: OSError) -> None:
        if exc.errno not in _ACCEPT_EXHAUSTED:
            log.debug("accept failed: %s", exc)
            return
        if not self._warned:
            log.warning("cannot accept web connections: %s", exc.strerror)
            self._warned = True
        await asyncio.sleep(ACCEPT_BACKOFF)

    def _serve(self, sock: socket.socket) -> None:
        connection = Connection(self, sock, self.web_config().ssl_context)
        connection.turn = self._turn
        self._open[connection] = None
        try:
            connection.start()
        except Exception:
            # Whatever goes wrong setting up one connection costs that client, never the
            # accept loop.
            log.exception("cannot serve a web connection")
            self.closed(connection, None)
            sock.close()

    def _room_now(self) -> bool:
        """True when one more connection fits, if need be by evicting one (`_admit` does,
        or closes the newcomer instead)."""
        if len(self._open) < self.max_connections:
            return True
        victim = self._victim()
        return victim is not None and self._eviction_tokens() >= 1

    def _victim(self) -> Connection | None:
        """The connection that has waited longest for a request head, once its own reader
        has had its turn (else it may have a request it has not read yet)."""
        victim = next(iter(self._waiting_first or self._waiting_again), None)
        if victim is None or victim.turn > self._turn - EVICT_AFTER_TURNS:
            return None
        return victim

    def _admit(self, sock: socket.socket) -> None:
        """Serve a connection just accepted; at the limit, make room for it by evicting the
        longest waiting one, unless it is itself an unfinished request: then it goes."""
        if len(self._open) >= self.max_connections:
            if self.web_config().ssl_context is None and _unfinished_head(sock):
                self._tokens -= SHED_COST
                sock.close()
                return
            victim = self._victim()
            # _room_now() saw one, with a token for it. Only when it got its request while
            # the loop awaited this accept is there none: then this one client is served
            # past the limit, within the descriptors' margin, rather than turned away.
            if victim is not None:
                self._tokens -= 1
                self._evict(victim)
        self._serve(sock)

    def _eviction_tokens(self) -> float:
        now = time.monotonic()
        self._tokens = min(
            EVICTION_BURST, self._tokens + (now - self._tokens_at) * EVICTIONS_PER_SECOND
        )
        self._tokens_at = now
        return self._tokens

    async def _make_room(self) -> None:
        while not self._room_now():
            self._room.clear()
            wait: float | None = None
            if self._waiting_first or self._waiting_again:
                tokens = (EVICTION_BATCH - self._eviction_tokens()) / EVICTIONS_PER_SECOND
                wait = max(tokens, 0.001)  # at least a turn of the loop
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._room.wait()
            self._turn += 1

    def _evict(self, victim: Connection) -> None:
        # Its slot is free at once; so is its descriptor when it has not sent a whole head
        # yet, else when its task has ended, a loop turn or two later (the connections
        # accepted meanwhile stay within the FD budget's margin).
        self.working(victim)
        self._open.pop(victim, None)
        victim.close()

    def closed(self, connection: Connection, task: asyncio.Task[None] | None) -> None:
        self.working(connection)
        self._open.pop(connection, None)
        self._room.set()
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.error("web connection failed", exc_info=task.exception())


def _unfinished_head(sock: socket.socket) -> bool:
    """True when the client has sent part of a request head and nothing more, or has hung
    up: it has asked for nothing. A client that has sent nothing yet may still be a real
    one a packet behind (False), as is one whose head is complete."""
    try:
        data = sock.recv(PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
    return not data or (b"\r\n\r\n" not in data and len(data) < PEEK_BYTES)
