"""The running exporter against hostile and broken peers at once — garbage and oversized DNS,
an endless body, an endless response head, a slow drip, resets, a silent TLS server — for
several rounds: it must stay up, name each symptom, keep a healthy neighbour on schedule, and
not grow in memory."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from peers import certs, webservers
from peers.dnsserver import GARBAGE, HUGE, DnsServer, cut, records, wrong_id
from peers.exporterproc import ExporterProcess

HOST = "web.test"
ROUNDS = 6
INTERVAL = 1.5

HOSTILE = {
    "dns-garbage": ({"kind": "dns", "target": "garbage.test"}, "dns_error"),
    "dns-huge": ({"kind": "dns", "target": "huge.test"}, "dns_error"),
    "dns-cut": ({"kind": "dns", "target": "cut.test"}, "dns_error"),
    "dns-wrong-id": ({"kind": "dns", "target": "wrong-id.test"}, "dns_timeout"),
    "endless-body": ({"kind": "http", "target": "https://" + HOST + ":{https}/endless"}, "ok"),
    "gigabyte-body": ({"kind": "http", "target": "https://" + HOST + ":{https}/huge"}, "ok"),
    "endless-head": (
        {"kind": "http", "target": "https://" + HOST + ":{https}/endless-head"},
        "http_error",
    ),
    "slow-drip": ({"kind": "http", "target": "https://" + HOST + ":{https}/slow"}, "http_timeout"),
    "reset-mid-body": (
        {"kind": "http", "target": "https://" + HOST + ":{https}/reset-mid-body"},
        "http_reset",
    ),
    "silent-tls": ({"kind": "tls", "target": HOST + ":{silent}"}, "tls_timeout"),
    "endless-transfer": (
        {"kind": "transfer", "target": "https://" + HOST + ":{https}/endless", "min_bytes": "4MiB"},
        "ok",
    ),
}


@pytest.fixture(scope="module")
def peers() -> Iterator[dict[str, object]]:
    context = certs.server_context(certs.issue(HOST, "127.0.0.1"))
    zone = {
        "garbage.test": GARBAGE,
        "huge.test": HUGE,
        "cut.test": cut(records("192.0.2.1")),
        "wrong-id.test": wrong_id(records("192.0.2.1")),
        HOST: records("127.0.0.1"),
    }
    with ExitStack() as stack:
        dns = stack.enter_context(DnsServer(zone))
        yield {
            "dns": dns.udp_url,
            "https": stack.enter_context(webservers.serve(webservers.http_handler(context))),
            "silent": stack.enter_context(webservers.serve(webservers.silent)),
        }


def test_hostile_peers_never_crash_stall_or_bloat_the_exporter(
    tmp_path: Path, peers: dict[str, object], listener: int
) -> None:
    checks = [{"name": "healthy", "kind": "tcp", "target": f"127.0.0.1:{listener}"}]
    for name, (options, _) in HOSTILE.items():
        check = {"name": name, **options, "target": str(options["target"]).format(**peers)}
        if check["kind"] == "dns":
            check["resolvers"] = ["hostile"]
        checks.append(check)
    config = tmp_path / "hostile.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "defaults": {
                    "interval": f"{INTERVAL}s",
                    "timeout": "1s",
                    "resolver": "hostile",
                    "ca_file": certs.ca_pem_path(),
                },
                "resolvers": {"hostile": peers["dns"]},
                "bogons": [],
                "services": {"hostile": {"checks": checks}},
            }
        )
    )
    exporter = ExporterProcess(config).start()
    try:
        exporter.wait_for(
            lambda: exporter.value("reachability_service_up", service="hostile") is not None
        )
        rss_after_first_round = exporter.value("process_resident_memory_bytes")
        time.sleep(ROUNDS * INTERVAL)
        assert exporter.get("/-/healthy")[0] == 200
        verdicts = {name: exporter.verdict("hostile", name) for name in HOSTILE}
        assert verdicts == {name: verdict for name, (_, verdict) in HOSTILE.items()}
        runs = exporter.value(
            "reachability_check_runs_total", service="hostile", check="healthy", kind="tcp"
        )
        assert runs is not None and runs >= ROUNDS, "the healthy check fell behind"
        rss = exporter.value("process_resident_memory_bytes")
        assert rss_after_first_round is not None and rss is not None
        # Each endless body is cut at max_body (1 MiB) and each round's garbage is collected:
        # memory after several rounds stays near what the first round needed.
        assert rss - rss_after_first_round < 24 * 1024 * 1024, (rss_after_first_round, rss)
        assert rss < 200 * 1024 * 1024
    finally:
        assert exporter.stop() == 0, exporter.logs()[-3000:]
