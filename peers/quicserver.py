"""A QUIC v1 server (aioquic, ALPN h3, handshake only) for the quic prober's tests and the
censorship lab, and a UDP relay that passes only the first replies, to make a handshake that
gets answers and then stalls."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import cast

from aioquic.asyncio.server import QuicServer, serve
from aioquic.quic.configuration import QuicConfiguration

ALPN = ["h3"]


async def start(
    cert_and_key: tuple[str, str],
    host: str = "127.0.0.1",
    port: int = 0,
    alpn: list[str] | None = None,
) -> tuple[QuicServer, int]:
    """Serve QUIC handshakes on host:port with the (chain PEM, key PEM) pair from
    peers.certs: (server, bound port). Close with server.close()."""
    configuration = QuicConfiguration(is_client=False, alpn_protocols=alpn or ALPN)
    configuration.load_cert_chain(*cert_and_key)
    server = await serve(host, port, configuration=configuration)
    transport = server._transport
    assert transport is not None
    return server, transport.get_extra_info("sockname")[1]


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: StallingRelay, client: tuple[str, int]) -> None:
        self.relay = relay
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay.reply(data, self.client)


@dataclasses.dataclass
class StallingRelay(asyncio.DatagramProtocol):
    """Forwards every datagram to `upstream`, but passes back only the first `replies`
    replies per client: the server answered, then the path went silent."""

    upstream: tuple[str, int]
    replies: int = 1
    transport: asyncio.DatagramTransport | None = None
    _clients: dict[tuple[str, int], _Upstream] = dataclasses.field(default_factory=dict)
    _passed: dict[tuple[str, int], int] = dataclasses.field(default_factory=dict)
    _tasks: set[asyncio.Future[None]] = dataclasses.field(default_factory=set)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        upstream = self._clients.get(addr)
        if upstream is None:
            task = asyncio.ensure_future(self._open(data, addr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif upstream.transport is not None:
            upstream.transport.sendto(data)

    async def _open(self, data: bytes, client: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        _, upstream = await loop.create_datagram_endpoint(
            lambda: _Upstream(self, client), remote_addr=self.upstream
        )
        self._clients[client] = upstream
        assert upstream.transport is not None
        upstream.transport.sendto(data)

    def reply(self, data: bytes, client: tuple[str, int]) -> None:
        passed = self._passed.get(client, 0)
        if passed < self.replies and self.transport is not None:
            self._passed[client] = passed + 1
            self.transport.sendto(data, client)

    def close(self) -> None:
        for upstream in self._clients.values():
            if upstream.transport is not None:
                upstream.transport.close()
        if self.transport is not None:
            self.transport.close()


async def start_stalling_relay(
    upstream: tuple[str, int], replies: int = 1, host: str = "127.0.0.1"
) -> tuple[StallingRelay, int]:
    loop = asyncio.get_running_loop()
    _, relay = await loop.create_datagram_endpoint(
        lambda: StallingRelay(upstream, replies), local_addr=(host, 0)
    )
    assert relay.transport is not None
    return relay, relay.transport.get_extra_info("sockname")[1]
