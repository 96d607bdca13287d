"""Driving a whole lab: bring it up with its censor chains and exporter config, run the real
exporter in the client namespace, and read its verdicts from /metrics as Prometheus would."""

from __future__ import annotations

import dataclasses
import http.client
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

from lab import labconfig, net, scenarios, topology
from lab.net import Lab
from peers.exporterproc import ExporterProcess

T = TypeVar("T")


def up(lab: Lab, interval: str = "2s", timeout: str = "1500ms") -> str:
    """Build the lab on a clean network; the path of the exporter config written for it."""
    topology.up(lab)
    try:
        scenarios.install_chains(lab)
        scenarios.lift(lab)
        return labconfig.write(lab, interval, timeout)
    except BaseException:
        topology.down(lab)
        raise


def down(lab: Lab) -> None:
    topology.down(lab)


@dataclasses.dataclass
class Snapshot:
    """The lab-relevant part of one scrape."""

    verdicts: dict[str, str]  # "service/check" -> verdict
    resolvers: dict[str, str]  # "service/check/resolver" -> verdict
    vantage: str | None
    runs: dict[str, float]  # "service/check" -> reachability_check_runs_total
    failures: dict[str, float]  # "service/check" -> sum of reachability_check_failures_total
    transfer_bytes: dict[str, float]
    transfer_rate: dict[str, float]


def parse(text: str) -> Snapshot:
    snap = Snapshot({}, {}, None, {}, {}, {}, {})
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            key = f"{labels.get('service')}/{labels.get('check')}"
            if sample.name == "reachability_check_verdict" and sample.value == 1:
                snap.verdicts[key] = labels["verdict"]
            elif sample.name == "reachability_dns_resolver_verdict" and sample.value == 1:
                snap.resolvers[f"{key}/{labels['resolver']}"] = labels["verdict"]
            elif sample.name == "reachability_vantage_state" and sample.value == 1:
                snap.vantage = labels["state"]
            elif sample.name == "reachability_check_runs_total":
                snap.runs[key] = sample.value
            elif sample.name == "reachability_check_failures_total":
                snap.failures[key] = snap.failures.get(key, 0.0) + sample.value
            elif sample.name == "reachability_transfer_bytes":
                snap.transfer_bytes[key] = sample.value
            elif sample.name == "reachability_transfer_rate_bytes_per_second":
                snap.transfer_rate[key] = sample.value
    return snap


class Exporter(ExporterProcess):
    """`python -m exporter` in the client namespace, listening on its loopback; its pid is
    left in the state directory so that `python -m lab down` can reap it after a crash."""

    def __init__(self, lab: Lab, config: str, port: int = net.EXPORTER_PORT) -> None:
        super().__init__(
            Path(config),
            port=port,
            prefix=["ip", "netns", "exec", lab.client],
            log_level="info",
            log_path=lab.path("exporter.log"),
        )
        self.lab = lab

    def start(self, ready_timeout: float = 20.0) -> Exporter:
        try:
            super().start(ready_timeout)
        except RuntimeError:
            self.stop()  # not ready is not running: reap it rather than leave it behind
            raise
        finally:
            if self.proc is not None:
                self.lab.path("exporter.pid").write_text(str(self.proc.pid))
        return self

    def stop(self) -> int:
        code = super().stop()
        self.lab.path("exporter.pid").unlink(missing_ok=True)
        self.proc = None
        return code

    def get(self, path: str, method: str = "GET", timeout: float = 10.0) -> tuple[int, str]:
        return fetch(self.lab, path, self.port, method, timeout)

    def snapshot(self) -> Snapshot:
        status, text = self.get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return parse(text)


def fetch(
    lab: Lab, path: str, port: int = net.EXPORTER_PORT, method: str = "GET", timeout: float = 10.0
) -> tuple[int, str]:
    """METHOD http://127.0.0.1:PORT/PATH inside the client namespace."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.sock = net.netns_connection(lab.client, ("127.0.0.1", port))
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def wait_for(predicate: Callable[[], T | None], timeout: float, poll: float = 0.2) -> T | None:
    """Poll until predicate() is truthy; its value, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(poll)
