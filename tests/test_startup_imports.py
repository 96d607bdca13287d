"""The exporter imports only what its configuration uses (README, "The exporter under
load"): cryptography (browser-shaped ClientHellos), aioquic (quic checks) and bcrypt (basic
auth) cost ~10 MB of every process each, so a configuration without `fingerprints`, quic
checks or a web configuration must run without them. Checked on the real exporter process,
with Python's own import log (PYTHONPROFILEIMPORTTIME) after every check has run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from peers import certs, webservers
from peers.exporterproc import ExporterProcess

OPTIONAL = ("cryptography", "aioquic", "bcrypt")


@pytest.fixture
def tls_port() -> Iterator[int]:
    context = certs.server_context(certs.issue("web.test", "127.0.0.1"))
    with webservers.serve(webservers.tls_handler(context)) as port:
        yield port


def _imported_packages(log: str) -> set[str]:
    """Top-level packages named in the `import time:` lines of the exporter's stderr."""
    return {
        match.group(1)
        for match in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s+([\w]+)", log, re.M)
    }


def _run_until_checked(tmp_path: Path, checks: list[dict[str, object]]) -> set[str]:
    path = tmp_path / "config.yaml"
    document = {
        "defaults": {"interval": "1s", "timeout": "500ms", "ca_file": certs.ca_pem_path()},
        "bogons": [],
        "services": {"svc": {"checks": checks}},
    }
    path.write_text(yaml.safe_dump(document))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPROFILEIMPORTTIME", "1")
        process = ExporterProcess(path).start()
    try:
        for check in checks:
            process.wait_for(lambda name=check["name"]: process.verdict("svc", str(name)) == "ok")
    finally:
        assert process.stop() == 0, process.logs()
    return _imported_packages(process.logs())


def test_tcp_and_tls_checks_run_without_cryptography_aioquic_or_bcrypt(
    tmp_path: Path, tls_port: int, listener: int
) -> None:
    imported = _run_until_checked(
        tmp_path,
        [
            {"name": "tcp", "kind": "tcp", "target": f"127.0.0.1:{listener}"},
            {"name": "tls", "kind": "tls", "target": f"web.test:{tls_port}",
             "address": ["127.0.0.1"]},
        ],
    )  # fmt: skip
    assert "exporter" in imported  # the import log is being read at all
    assert not imported & set(OPTIONAL), imported & set(OPTIONAL)


def test_a_check_with_browser_fingerprints_loads_cryptography_when_it_runs(
    tmp_path: Path, tls_port: int
) -> None:
    imported = _run_until_checked(
        tmp_path,
        [{"name": "tls", "kind": "tls", "target": f"web.test:{tls_port}",
          "address": ["127.0.0.1"], "fingerprints": ["chrome"]}],
    )  # fmt: skip
    assert "cryptography" in imported
