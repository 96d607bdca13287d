"""What probes share within one loaded configuration: the config itself, TLS contexts, QUIC
configurations and HTTP clients, built once per distinct setting instead of once per run."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import httpx

from exporter import trust
from exporter.config import Config

_T = TypeVar("_T")


class ProbeEnv:
    def __init__(self, config: Config, *, dns_in_flight: int | None = None) -> None:
        """`dns_in_flight`: at most this many queries waiting on one resolver at a time (None:
        no bound). A home router or an ISP resolver drops what it cannot queue, and those
        drops would read as `dns_timeout` of the checks, not of our burst."""
        self.config = config
        self._ssl_contexts: dict[tuple[bool, tuple[str, ...]], ssl.SSLContext] = {}
        self._clients: dict[Hashable, httpx.AsyncClient] = {}
        self._shared: dict[Hashable, Any] = {}
        self._dns_in_flight = dns_in_flight
        self._dns_slots: dict[Hashable, asyncio.Semaphore] = {}

    def dns_slot(self, resolver: Hashable) -> contextlib.AbstractAsyncContextManager[object]:
        """Held while one query to `resolver` is in flight."""
        if self._dns_in_flight is None:
            return contextlib.nullcontext()
        slots = self._dns_slots.get(resolver)
        if slots is None:
            slots = self._dns_slots[resolver] = asyncio.Semaphore(self._dns_in_flight)
        return slots

    def ssl_context(self, verify: bool, alpn: Sequence[str] = ()) -> ssl.SSLContext:
        """System roots plus `defaults.ca_file` (see exporter.trust), with `alpn` offered. One
        context per setting: a caller that needs other options asks for another `alpn`."""
        key = (verify, tuple(alpn))
        context = self._ssl_contexts.get(key)
        if context is None:
            context = self._ssl_contexts[key] = trust.tls_context(self.config.ca_file, verify, alpn)
        return context

    def shared(self, key: Hashable, factory: Callable[[], _T]) -> _T:
        """One object per `key` for this configuration (e.g. a QUIC configuration)."""
        if key not in self._shared:
            self._shared[key] = factory()
        value: _T = self._shared[key]
        return value

    def http_client(
        self, key: Hashable, factory: Callable[[], httpx.AsyncClient]
    ) -> httpx.AsyncClient:
        """One shared client per distinct client configuration (`key`)."""
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = factory()
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
