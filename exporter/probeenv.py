"""What probes share within one loaded configuration: the config itself, TLS contexts and
HTTP clients, built once per distinct setting instead of once per run."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Hashable

import httpx

from exporter.config import Config


class ProbeEnv:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._ssl_contexts: dict[bool, ssl.SSLContext] = {}
        self._clients: dict[Hashable, httpx.AsyncClient] = {}

    def ssl_context(self, verify: bool) -> ssl.SSLContext:
        """System roots plus `defaults.ca_file`; with verify off, no checks at all (a probe
        that must only prove the handshake completes, e.g. the control-SNI retry)."""
        context = self._ssl_contexts.get(verify)
        if context is None:
            context = ssl.create_default_context()
            if self.config.ca_file:
                context.load_verify_locations(cafile=self.config.ca_file)
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl_contexts[verify] = context
        return context

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
