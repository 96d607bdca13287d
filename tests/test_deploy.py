"""deploy/: the systemd unit's sandbox, the install script, the example configurations."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.prometheus_harness import REPO

DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "systemd" / "reachability-exporter.service"
INSTALL = DEPLOY / "install.sh"
# `systemd-analyze security --offline=yes` on Debian 12 (systemd 252): what remains is the
# network access a prober needs (deploy/systemd/reachability-exporter.service says what).
MAX_EXPOSURE = 1.1


def tool(name: str) -> str:
    """CI installs every tool these tests use: a missing one is a failure, not a skip."""
    path = shutil.which(name)
    assert path, f"{name} is not installed (see the apt packages in .ci/run)"
    return path


def run(*args: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)  # type: ignore[call-overload,no-any-return]


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_sandbox_exposure_is_at_most_1_1() -> None:
    result = run(tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", UNIT)
    assert result.returncode == 0, result.stderr
    # Unknown or misspelt directives are only warnings, on stderr: treat them as errors.
    assert result.stderr == ""
    exposure = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert exposure, result.stdout[-500:]
    assert float(exposure.group(1)) <= MAX_EXPOSURE


def test_unit_runs_unprivileged_reloads_on_hup_and_restarts_on_failure() -> None:
    unit = unit_settings()
    assert unit["DynamicUser"] == ["yes"]
    assert unit["CapabilityBoundingSet"] == [""]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_NETLINK AF_UNIX"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["ExecStart"][0].startswith("/opt/reachability-exporter/bin/reachability-exporter")
    assert "--config.file=%E/reachability-exporter/config.yaml" in unit["ExecStart"][0]


def test_install_script_passes_shellcheck() -> None:
    assert run("bash", "-n", INSTALL).returncode == 0
    result = run(tool("shellcheck"), INSTALL)
    assert result.returncode == 0, result.stdout


def test_install_script_is_idempotent_and_keeps_the_configuration(tmp_path: Path) -> None:
    """A real install (a virtualenv, the package and its dependencies from the package
    index) into DESTDIR, run twice; the second run must keep an edited config.yaml."""
    env = {"DESTDIR": str(tmp_path), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    env["PATH"] = f"{Path(tool('python3')).parent}:{env['PATH']}"
    first = run("bash", INSTALL, env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]

    config = tmp_path / "etc/reachability-exporter/config.yaml"
    assert config.read_text() == (REPO / "config.yaml").read_text()
    assert config.stat().st_mode & 0o777 == 0o644  # readable by the dynamic user
    config.write_text(config.read_text() + "# edited by the operator\n")

    second = run("bash", INSTALL, env=env, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert config.read_text().endswith("# edited by the operator\n")

    unit = tmp_path / "etc/systemd/system/reachability-exporter.service"
    assert unit.read_text() == UNIT.read_text()
    share = tmp_path / "opt/reachability-exporter/share"
    assert sorted(p.name for p in (share / "dashboards").iterdir()) == sorted(
        p.name for p in (REPO / "dashboards").glob("*.json")
    )
    assert (share / "prometheus/reachability.rules.yml").is_file()
    version = run(tmp_path / "opt/reachability-exporter/bin/reachability-exporter", "--version")
    assert version.returncode == 0 and version.stdout.startswith("reachability-exporter ")


def test_install_script_refuses_unknown_options() -> None:
    result = run("bash", INSTALL, "--frobnicate", env={"DESTDIR": "/nonexistent"})
    assert result.returncode == 2
    assert "unknown option --frobnicate" in result.stderr


@pytest.mark.parametrize(
    "path", sorted((DEPLOY / "grafana" / "provisioning").rglob("*.yml")), ids=lambda p: p.name
)
def test_grafana_provisioning_files_point_at_the_installed_dashboards(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert doc["apiVersion"] == 1
    if "providers" in doc:
        (provider,) = doc["providers"]
        assert provider["type"] == "file"
        assert provider["options"]["path"] == "/opt/reachability-exporter/share/dashboards"
    else:
        (source,) = doc["datasources"]
        assert source["type"] == "prometheus"


def test_unit_proc_sandbox_keeps_the_process_metrics() -> None:
    """ProtectProc= and ProcSubset= become options of the service's /proc mount; under
    them prometheus_client must still export process_* (it reads /proc/stat for the boot
    time, which ProcSubset=pid hides, and then exports nothing)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a private /proc needs root (CI runs as root)")
    unit = unit_settings()
    options = []
    if "ProtectProc" in unit:
        options.append(f"hidepid={unit['ProtectProc'][-1]}")
    if "ProcSubset" in unit:
        options.append(f"subset={unit['ProcSubset'][-1]}")
    collect = (
        "from prometheus_client.process_collector import ProcessCollector\n"
        "print(' '.join(m.name for m in ProcessCollector(registry=None).collect()))"
    )
    mount = f"mount -t proc -o {','.join(options) or 'defaults'} proc /proc"
    result = run(
        tool("unshare"), "--mount", "--pid", "--fork", "sh", "-c",
        f'{mount} && exec "$0" -c "$1"', sys.executable, collect,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "process_cpu_seconds" in result.stdout.split(), result.stdout
    assert "process_resident_memory_bytes" in result.stdout.split(), result.stdout
