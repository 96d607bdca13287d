"""`reachability-exporter --once` end to end: one configuration with a check for every
scenario the core probes can meet, against real local servers, and the verdict each must print.
This is the user's view of the whole pipeline: config → resolution → probe → classification."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from peers import certs, webservers
from peers.dnsserver import DROP, NODATA, NXDOMAIN, SERVFAIL, DnsServer, records
from peers.exporterproc import ExporterProcess
from peers.listeners import free_port

REPO = Path(__file__).resolve().parents[1]
HOST = "web.test"

# check name → (check options without name, expected verdict); {placeholders} are ports.
SCENARIOS: dict[str, tuple[dict[str, object], str]] = {
    "dns-ok": ({"kind": "dns", "target": "ok.test"}, "ok"),
    "dns-nxdomain": ({"kind": "dns", "target": "removed.test"}, "dns_nxdomain"),
    "dns-nodata": ({"kind": "dns", "target": "nodata.test"}, "dns_nodata"),
    "dns-servfail": ({"kind": "dns", "target": "servfail.test"}, "dns_error"),
    "dns-timeout": ({"kind": "dns", "target": "dropped.test"}, "dns_timeout"),
    "dns-bogon": ({"kind": "dns", "target": "bogon.test"}, "dns_bogon"),
    "dns-mismatch": ({"kind": "dns", "target": "spoofed.test"}, "dns_mismatch"),
    "tcp-ok": ({"kind": "tcp", "target": "127.0.0.1:{https}"}, "ok"),
    "tcp-refused": ({"kind": "tcp", "target": "127.0.0.1:{closed}"}, "tcp_refused"),
    "tcp-timeout": ({"kind": "tcp", "target": "{blackhole}:443"}, "tcp_timeout"),
    "tcp-nxdomain": ({"kind": "tcp", "target": "removed.test:443"}, "dns_nxdomain"),
    "tls-ok": ({"kind": "tls", "target": HOST + ":{tls}"}, "ok"),
    "tls-expired": ({"kind": "tls", "target": HOST + ":{expired}"}, "tls_cert_invalid"),
    "tls-reset": ({"kind": "tls", "target": HOST + ":{reset}"}, "tls_reset"),
    "tls-timeout": ({"kind": "tls", "target": HOST + ":{silent}"}, "tls_timeout"),
    "tls-sni": (
        {"kind": "tls", "target": "blocked.test:{sni}", "control_sni": HOST},
        "tls_sni_blocked",
    ),
    "http-ok": ({"kind": "http", "target": "https://" + HOST + ":{https}/ok"}, "ok"),
    "http-huge": ({"kind": "http", "target": "https://" + HOST + ":{https}/endless"}, "ok"),
    "http-blockpage": (
        {"kind": "http", "target": "https://" + HOST + ":{https}/blockpage"},
        "http_blockpage",
    ),
    "http-status": (
        {"kind": "http", "target": "https://" + HOST + ":{https}/status/503"},
        "http_status",
    ),
    "http-reset": (
        {"kind": "http", "target": "https://" + HOST + ":{https}/reset-mid-body"},
        "http_reset",
    ),
    "http-timeout": (
        {"kind": "http", "target": "https://" + HOST + ":{https}/slow"},
        "http_timeout",
    ),
    "http-cert": (
        {"kind": "http", "target": "https://" + HOST + ":{expired}/ok"},
        "tls_cert_invalid",
    ),
}


@pytest.fixture(scope="module")
def ports() -> Iterator[dict[str, object]]:
    valid = certs.server_context(certs.issue(HOST, "blocked.test", "127.0.0.1"))
    expired = certs.server_context(certs.issue_expired(HOST))
    zone = {
        "ok.test": records("192.0.2.10"),
        "web.test": records("127.0.0.1"),
        "blocked.test": records("127.0.0.1"),
        "nodata.test": NODATA,
        "servfail.test": SERVFAIL,
        "dropped.test": DROP,
        "bogon.test": records("10.10.34.35"),
        "spoofed.test": records("198.51.100.66"),
    }
    honest = {**zone, "bogon.test": records("192.0.2.20"), "spoofed.test": records("192.0.2.21")}
    honest |= {"nodata.test": records("192.0.2.22"), "servfail.test": records("192.0.2.23")}
    honest |= {"dropped.test": records("192.0.2.24"), "removed.test": records("192.0.2.25")}
    with ExitStack() as stack:
        isp = stack.enter_context(DnsServer(zone | {"removed.test": NXDOMAIN}))
        control = stack.enter_context(DnsServer(honest))
        serve = webservers.serve
        yield {
            "isp": isp.udp_url,
            "control": control.https_url,
            "https": stack.enter_context(serve(webservers.http_handler(valid))),
            "tls": stack.enter_context(serve(webservers.tls_handler(valid))),
            "expired": stack.enter_context(serve(webservers.http_handler(expired))),
            "reset": stack.enter_context(serve(webservers.reset_on_hello)),
            "silent": stack.enter_context(serve(webservers.silent)),
            "sni": stack.enter_context(serve(webservers.sni_filter("blocked.test", valid))),
            "closed": free_port(),
            "blackhole": stack.enter_context(webservers.blackhole()),
        }


def write_config(tmp_path: Path, ports: dict[str, object]) -> Path:
    checks = []
    for name, (options, _) in SCENARIOS.items():
        check = {"name": name, **options}
        check["target"] = str(check["target"]).format(**ports)
        if check["kind"] == "dns":
            check["resolvers"] = ["isp"]
        checks.append(check)
    document = {
        "defaults": {"interval": "30s", "timeout": "2s", "resolver": "isp",
                     "ca_file": certs.ca_pem_path()},
        "resolvers": {"isp": ports["isp"], "control": ports["control"]},
        # Test answers live on loopback; only this range counts as a censor's stub here.
        "bogons": ["10.10.0.0/16"],
        "blockpages": [webservers.BLOCKPAGE_PATTERN],
        "services": {"lab": {"checks": checks}},
    }  # fmt: skip
    path = tmp_path / "scenarios.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_once_prints_the_right_verdict_for_every_scenario(
    tmp_path: Path, ports: dict[str, object]
) -> None:
    config = write_config(tmp_path, ports)
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "--once", f"--config.file={config}", "--output=json"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # some scenarios fail, by design
    got = {row["check"]: row["verdict"] for row in json.loads(done.stdout)["checks"]}
    expected = {name: verdict for name, (_, verdict) in SCENARIOS.items()}
    assert got == expected
    table = subprocess.run(
        [sys.executable, "-m", "exporter", "--once", f"--config.file={config}",
         "--service=lab"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    # The vantage line, a blank line, the header ... rows, a blank line, the summary.
    lines = table.stdout.splitlines()[3:-2]
    rows = {line.split()[1]: line.split()[3] for line in lines}
    assert rows == expected


# Every metric name of the README's metrics table (histograms and counters by their exposed
# sample names).
DOCUMENTED_METRICS = (
    "reachability_check_success", "reachability_check_verdict",
    "reachability_check_duration_seconds", "reachability_check_phase_seconds",
    "reachability_check_latency_seconds_bucket", "reachability_check_runs_total",
    "reachability_check_failures_total", "reachability_check_last_run_timestamp_seconds",
    "reachability_check_last_change_timestamp_seconds", "reachability_check_info",
    "reachability_dns_answers", "reachability_dns_resolver_verdict",
    "reachability_tls_cert_expiry_timestamp_seconds", "reachability_http_status_code",
    "reachability_service_up", "reachability_service_verdict", "reachability_vantage_state",
    "reachability_exporter_build_info", "reachability_exporter_config_last_reload_successful",
    "reachability_exporter_config_last_reload_success_timestamp_seconds",
    "reachability_exporter_scheduler_lag_seconds_bucket",
)  # fmt: skip


def test_every_contract_metric_of_these_kinds_appears_in_metrics(
    tmp_path: Path, ports: dict[str, object]
) -> None:
    config = write_config(tmp_path, ports)
    config.write_text(config.read_text().replace("interval: 30s", "interval: 3s"))
    exporter = ExporterProcess(config).start()
    try:
        exporter.wait_for(
            lambda: exporter.value("reachability_service_up", service="lab") is not None,
            timeout=30,
        )
        names = {name for name, _ in exporter.samples()}
        assert set(DOCUMENTED_METRICS) <= names, set(DOCUMENTED_METRICS) - names
        verdicts = {check: exporter.verdict("lab", check) for check in SCENARIOS}
        assert verdicts == {name: verdict for name, (_, verdict) in SCENARIOS.items()}
        assert exporter.value("reachability_service_verdict", service="lab", verdict="ok") is None
    finally:
        exporter.stop()
