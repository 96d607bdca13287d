"""The servers of one side of the lab, run as one process inside that side's namespace:

    ip netns exec rxlab-foreign python -m lab.servers foreign --state /run/rxlab

foreign: the messenger (HTTPS, HTTP, STUN, QUIC), its media CDN, a neutral site, an honest
resolver with DoH and DoT, and a SOCKS5/HTTP proxy. domestic: a domestic site, the ISP's
resolver (whose answers scenarios change), and the ISP's blockpage server. A Unix socket in
the state directory takes commands (ping; dns overrides) from `python -m lab`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

from lab import net
from peers import dnsserver, quicserver, stunserver, webservers
from peers.proxies import Proxy

# What the ISP resolver answers for a name when a scenario orders it (see lab.scenarios).
BOGON_ANSWER = "127.0.0.1"
# The ISP's blockpage, which the lab config's `blockpages` pattern recognises.
BLOCKPAGE_HOST = "blockpage.domestic.lab"
BLOCKPAGE = (
    b"<!doctype html><title>Access restricted</title><p>Access to this resource is restricted "
    b"by decision of the lab censor. See http://blockpage.domestic.lab/ for details.</p>\n"
)


def tls_context(state: Path, name: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(state / f"{name}.pem", state / f"{name}.key")
    # Our sites speak HTTP/1.1 only; say so, so that an h2-capable client does not try h2.
    context.set_alpn_protocols(["http/1.1"])
    return context


def honest_zone() -> dict[str, dnsserver.Entry]:
    return {name: dnsserver.records(address) for name, address in net.ZONE.items()}


def dns_entry(name: str, mode: str) -> dnsserver.Entry:
    entries = {
        "honest": dnsserver.records(net.ZONE[name]) if name in net.ZONE else dnsserver.NXDOMAIN,
        "nxdomain": dnsserver.NXDOMAIN,
        "nodata": dnsserver.NODATA,
        "servfail": dnsserver.SERVFAIL,
        "drop": dnsserver.DROP,
        "bogon": dnsserver.records(BOGON_ANSWER),
        "blockpage": dnsserver.records(net.BLOCKPAGE),
    }
    return entries[mode]


class Side:
    def __init__(self, role: str, state: Path) -> None:
        self.role = role
        self.state = state
        self.closers: list[Any] = []
        self.isp: dnsserver.DnsServer | None = None
        self.info: dict[str, Any] = {}

    def listen(self, handler: webservers.Handler, host: str, port: int) -> None:
        self.closers.append(webservers.listen(handler, host, port))

    async def start(self) -> None:
        if self.role == "foreign":
            await self.start_foreign()
        else:
            await self.start_domestic()

    async def start_foreign(self) -> None:
        site_tls = tls_context(self.state, "server")
        for host in (net.MESSENGER, net.MEDIA, net.NEUTRAL):
            self.listen(webservers.http_handler(site_tls), host, 443)
            self.listen(webservers.http_handler(), host, 80)
        for port in (80, 443):  # plain HTTP on both, as Telegram's DCs speak it
            # Any request, POST included, gets an answer: the application answer that a
            # transparent proxy in the path cannot give.
            self.listen(webservers.http_handler(), net.DC, port)
        stun, _ = await stunserver.start(net.MESSENGER, net.PORT_STUN)
        self.closers.append(stun)
        quic, _ = await quicserver.start(
            (str(self.state / "server.pem"), str(self.state / "server.key")), net.MESSENGER, 443
        )
        self.closers.append(quic)
        proxy = Proxy(net.ZONE)
        self.listen(proxy.socks5, net.PROXY, net.PORT_PROXY_SOCKS)
        self.listen(proxy.http, net.PROXY, net.PORT_PROXY_HTTP)
        control = dnsserver.DnsServer(
            honest_zone(),
            host=net.CONTROL_DNS,
            port=53,
            cert=(str(self.state / "server.pem"), str(self.state / "server.key")),
        ).start()
        self.closers.append(control)
        self.info.update(doh_port=control.https_port, dot_port=control.tls_port)

    async def start_domestic(self) -> None:
        self.listen(webservers.http_handler(tls_context(self.state, "server")), net.DOMESTIC, 443)
        self.listen(webservers.http_handler(), net.DOMESTIC, 80)
        blockpage_tls = tls_context(self.state, "blockpage")
        redirect = webservers.redirect_to_blockpage
        self.listen(redirect(BLOCKPAGE_HOST, BLOCKPAGE), net.BLOCKPAGE, 80)
        self.listen(redirect(BLOCKPAGE_HOST, BLOCKPAGE, blockpage_tls), net.BLOCKPAGE, 443)
        # What a transparent proxy may answer in a blocked site's place.
        refusal = webservers.answer_every_request(
            451, b"unavailable\n", "Unavailable For Legal Reasons"
        )
        self.listen(refusal, net.BLOCKPAGE, net.PORT_BLOCKPAGE_451)
        self.listen(webservers.garbage, net.BLOCKPAGE, net.PORT_BLOCKPAGE_GARBAGE)
        self.listen(webservers.not_tls, net.BLOCKPAGE, net.PORT_BLOCKPAGE_PLAIN)
        self.listen(webservers.silent, net.BLOCKPAGE, net.PORT_BLOCKPAGE_SILENT)
        self.isp = dnsserver.DnsServer(honest_zone(), host=net.ISP_DNS, port=53, tls=False).start()
        self.closers.append(self.isp)

    def command(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "ping":
            return {"ok": True, "role": self.role, **self.info}
        if op == "dns" and self.isp is not None:
            # Every name back to honest first, so that overrides never pile up.
            for name in net.ZONE:
                self.isp.set(name, dns_entry(name, "honest"))
            for name, mode in request.get("entries", {}).items():
                self.isp.set(name, dns_entry(name, mode))
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {op!r} for {self.role}"}

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ValueError):
            while line := await reader.readline():
                try:
                    reply = self.command(json.loads(line))
                except (KeyError, ValueError) as exc:
                    reply = {"ok": False, "error": str(exc)}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        writer.close()

    def close(self) -> None:
        for closer in reversed(self.closers):
            with contextlib.suppress(Exception):
                if isinstance(closer, dnsserver.DnsServer):
                    closer.stop()
                else:
                    closer.close()


async def main_async(role: str, state: Path) -> None:
    side = Side(role, state)
    socket_path = state / f"{role}.sock"
    socket_path.unlink(missing_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await side.start()
        control = await asyncio.start_unix_server(side.control, str(socket_path))
        print(f"lab {role} servers ready", flush=True)
        await stop.wait()
        control.close()
    finally:
        side.close()
        socket_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.servers")
    parser.add_argument("role", choices=("foreign", "domestic"))
    parser.add_argument("--state", type=Path, default=net.DEFAULT_STATE)
    args = parser.parse_args(argv)
    asyncio.run(main_async(args.role, args.state))
    return 0


if __name__ == "__main__":
    sys.exit(main())
