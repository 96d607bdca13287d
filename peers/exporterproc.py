"""Runs the real exporter (`python -m exporter`) as a child process, for the end-to-end
tests and for the lab (there inside the client's namespace), and reads its /metrics the way
Prometheus would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from peers import REPO
from peers.listeners import free_port


class ExporterProcess:
    """The exporter on 127.0.0.1:`port`, logging to `log_path` (beside the config unless
    given); `prefix` goes before the command, e.g. `ip netns exec NS` to start it in a
    namespace, in which case `get` must be overridden to reach that namespace's loopback."""

    def __init__(
        self,
        config: Path,
        args: Sequence[str] = (),
        port: int | None = None,
        *,
        prefix: Sequence[str] = (),
        log_level: str = "debug",
        log_path: Path | None = None,
    ) -> None:
        self.config = config
        self.port = port or free_port()
        self.args = list(args)
        self.prefix = list(prefix)
        self.log_level = log_level
        if not any(a.startswith("--storage.path") for a in self.args):
            # The default (data/ in the working directory) would write into the checkout.
            self.args.append(f"--storage.path={config.parent / 'data'}")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = log_path or config.with_suffix(".log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 15.0) -> ExporterProcess:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "exporter", f"--config.file={self.config}",
             f"--web.listen-address=127.0.0.1:{self.port}", f"--log.level={self.log_level}",
             *self.args],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        deadline = time.monotonic() + ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exporter exited {self.proc.returncode}:\n{self.logs()}")
            try:
                if self.get("/-/ready")[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                # Left running: a test may go on to reach it by other means (TLS, say).
                raise RuntimeError(f"exporter not ready in {ready_timeout}s:\n{self.logs()}")
            time.sleep(0.05)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, method: str = "GET", timeout: float = 30.0) -> tuple[int, str]:
        request = urllib.request.Request(self.url + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        _, text = self.get("/metrics")
        out = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return out

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples().get((name, frozenset(labels.items())))

    def verdict(self, service: str, check: str) -> str | None:
        for (name, labels), value in self.samples().items():
            found = dict(labels)
            wanted = found.get("service") == service and found.get("check") == check
            if name == "reachability_check_verdict" and value == 1.0 and wanted:
                return found["verdict"]
        return None

    def wait_for(self, predicate, timeout: float = 20.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
        """Poll until predicate() is truthy; return its value or raise with the logs."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(
            f"condition not met in {timeout}s (last: {last!r})\n{self.logs()[-4000:]}"
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; what a crash or the OOM killer does."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
