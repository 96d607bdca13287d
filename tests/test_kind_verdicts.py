"""The failure verdicts of each kind (the registry, exporter/kinds.py), which pre-create
reachability_check_failures_total's zero series, against what the real probes return when
real loopback peers fail them in each layer: a probe giving a verdict its kind's table lacks
would start a series from 1 instead of 0, hiding that failure from increase()."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.kinds import REGISTRY
from exporter.metrics import failure_verdicts
from exporter.verdicts import Verdict
from peers import certs, webservers
from peers.dnsserver import DnsServer
from peers.listeners import free_port


@contextlib.contextmanager
def peers() -> Iterator[dict[str, Any]]:
    context = certs.server_context(certs.issue("web.test", "127.0.0.1"))
    wrong_name = certs.server_context(certs.issue("other.test"))
    with contextlib.ExitStack() as stack:
        dns = stack.enter_context(DnsServer({}, tls=False))
        serve = webservers.serve
        yield {
            "dns": dns.udp_url,
            "closed": free_port(),
            "udp_closed": free_port(kind=socket.SOCK_DGRAM),
            "silent": stack.enter_context(serve(webservers.silent)),
            "reset": stack.enter_context(serve(webservers.reset_on_hello)),
            "not_tls": stack.enter_context(serve(webservers.not_tls)),
            "wrong_name": stack.enter_context(serve(webservers.tls_handler(wrong_name))),
            "https": stack.enter_context(serve(webservers.http_handler(context))),
        }


# (kind, check options with {placeholders} for the peers), each failing in one layer.
FAILURES = [
    ("dns", {"target": "missing.test", "resolvers": ["local"]}),
    ("tcp", {"target": "missing.test:443", "resolver": "local"}),
    ("tcp", {"target": "127.0.0.1:{closed}"}),
    ("tls", {"target": "127.0.0.1:{silent}", "timeout": "500ms"}),
    ("tls", {"target": "127.0.0.1:{reset}"}),
    ("tls", {"target": "127.0.0.1:{not_tls}"}),
    ("tls", {"target": "web.test:{wrong_name}", "address": ["127.0.0.1"]}),
    ("http", {"target": "https://web.test:{https}/status/500", "address": ["127.0.0.1"]}),
    ("http", {"target": "https://web.test:{https}/blockpage", "address": ["127.0.0.1"]}),
    ("http", {"target": "https://web.test:{https}/reset", "address": ["127.0.0.1"]}),
    ("http", {"target": "https://web.test:{wrong_name}/", "address": ["127.0.0.1"]}),
    ("transfer", {"target": "https://web.test:{https}/stall", "address": ["127.0.0.1"],
                  "timeout": "2s", "stall_timeout": "500ms"}),
    ("transfer", {"target": "https://web.test:{https}/status/404", "address": ["127.0.0.1"]}),
    ("stun", {"target": "127.0.0.1:{udp_closed}", "timeout": "500ms"}),
    ("quic", {"target": "127.0.0.1:{udp_closed}", "timeout": "500ms"}),
]  # fmt: skip


async def test_every_failure_a_probe_returns_is_in_its_kinds_table() -> None:
    seen: dict[str, set[Verdict]] = {}
    with peers() as found:
        for kind, options in FAILURES:
            check = {
                "kind": kind,
                **{
                    key: value.format(**found) if isinstance(value, str) else value
                    for key, value in options.items()
                },
            }
            result = await webservers.probe(check, timeout="2s", resolvers={"local": found["dns"]})
            assert result.verdict is not Verdict.OK, (check, result.detail)
            assert result.verdict in failure_verdicts(kind), (check, result.verdict, result.detail)
            seen.setdefault(kind, set()).add(result.verdict)
    # The runs above did reach the layers they were meant to.
    assert seen["tls"] >= {Verdict.TLS_TIMEOUT, Verdict.TLS_RESET, Verdict.TLS_CERT_INVALID}
    assert {Verdict.HTTP_STATUS, Verdict.HTTP_BLOCKPAGE} <= seen["http"]
    assert Verdict.DNS_NXDOMAIN in seen["dns"] and Verdict.DNS_NXDOMAIN in seen["tcp"]


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_every_kind_but_dns_can_fail_in_resolving_its_target(kind: str) -> None:
    resolving = {Verdict.DNS_NXDOMAIN, Verdict.DNS_NODATA, Verdict.DNS_TIMEOUT, Verdict.DNS_ERROR}
    assert resolving <= set(failure_verdicts(kind))
