"""deploy/: the systemd unit's sandbox, the install script, the example configurations."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import bcrypt
import pytest
import yaml

from exporter import fdlimit, webconfig
from exporter.scheduler import DEFAULT_CONCURRENCY
from exporter.webserver import DEFAULT_MAX_CONNECTIONS
from exporter.webserver.server import BACKLOG
from peers import REPO, certs
from peers.listeners import free_port

DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "systemd" / "reachability-exporter.service"
INSTALL = DEPLOY / "install.sh"
DEFAULTS = DEPLOY / "default" / "reachability-exporter"
WEB_CONFIG_EXAMPLE = DEPLOY / "web-config.example.yml"
LOCALHOST = "127.0.0.1:9869"
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


def test_unit_keeps_the_evidence_journal_in_its_state_directory() -> None:
    unit = unit_settings()
    # ProtectSystem=strict makes everything else read-only: the journal needs this one.
    assert unit["StateDirectory"] == ["reachability-exporter"]
    assert "--storage.path=/var/lib/reachability-exporter" in unit["ExecStart"][0]


@pytest.mark.parametrize(
    "script",
    [INSTALL, REPO / "scripts" / "test.sh", REPO / "scripts" / "fresh-debian-check.sh"],
    ids=lambda p: p.name,
)
def test_shell_scripts_pass_shellcheck(script: Path) -> None:
    assert run("bash", "-n", script).returncode == 0
    result = run(tool("shellcheck"), script)
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
    assert (tmp_path / "etc/default/reachability-exporter").read_text() == DEFAULTS.read_text()
    share = tmp_path / "opt/reachability-exporter/share"
    assert (share / WEB_CONFIG_EXAMPLE.name).read_text() == WEB_CONFIG_EXAMPLE.read_text()
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


# ---- Listening on localhost, and exposing it on purpose --------------------------------------


def defaults_file(path: Path) -> dict[str, str]:
    """The variables of /etc/default/reachability-exporter, as systemd and sh both read them."""
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = " ".join(shlex.split(value))
    return values


def test_unit_and_install_script_listen_on_localhost_by_default() -> None:
    """A vantage point must not publish its measurements, nor offer /probe, to the world."""
    unit = unit_settings()
    assert f"LISTEN_ADDRESS={LOCALHOST} ARGS=" in unit["Environment"]
    assert unit["EnvironmentFile"] == ["-/etc/default/reachability-exporter"]
    (exec_start,) = unit["ExecStart"]
    assert exec_start.split()[1:] == [
        "--config.file=%E/reachability-exporter/config.yaml",
        "--web.listen-address=${LISTEN_ADDRESS}",
        "--storage.path=/var/lib/reachability-exporter",
        "$ARGS",
    ]
    assert defaults_file(DEFAULTS) == {"LISTEN_ADDRESS": LOCALHOST, "ARGS": ""}


@pytest.mark.parametrize("name", ["agent.yml", "prometheus.yml"])
def test_prometheus_configs_scrape_where_the_unit_listens(name: str) -> None:
    doc = yaml.safe_load((DEPLOY / "prometheus" / name).read_text())
    (job,) = [j for j in doc["scrape_configs"] if j["job_name"] == "reachability"]
    assert [t for c in job["static_configs"] for t in c["targets"]] == [LOCALHOST]


def test_web_config_example_loads_with_tls_and_the_documented_password(tmp_path: Path) -> None:
    """The example for exposing the exporter is a working exporter-toolkit file: with a real
    certificate and key at its paths it loads, serves TLS and knows user prometheus."""
    cert, key = certs.issue("localhost")
    text = WEB_CONFIG_EXAMPLE.read_text()
    assert "/etc/reachability-exporter/server.crt" in text
    text = text.replace("/etc/reachability-exporter/server.crt", str(cert))
    text = text.replace("/etc/reachability-exporter/server.key", str(key))
    path = tmp_path / "web.yml"
    path.write_text(text)
    loaded = webconfig.load(str(path))
    assert loaded.ssl_context is not None
    assert list(loaded.users) == ["prometheus"]
    assert bcrypt.checkpw(b"change-me", loaded.users["prometheus"])


# ---- Where systemd is not running -------------------------------------------------------------


def test_install_script_runs_the_exporter_in_the_foreground_on_request(tmp_path: Path) -> None:
    """--foreground: a container or chroot without systemd still gets a running exporter,
    with the flags of /etc/default/reachability-exporter."""
    port = free_port()
    staged = tmp_path / "etc/default/reachability-exporter"
    staged.parent.mkdir(parents=True)
    staged.write_text(DEFAULTS.read_text().replace(LOCALHOST, f"127.0.0.1:{port}"))
    env = {"DESTDIR": str(tmp_path), "PATH": f"{Path(tool('python3')).parent}:/usr/bin:/bin"}
    process = subprocess.Popen(
        ["bash", str(INSTALL), "--foreground"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        body = ""
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert "reachability_exporter_build_info" in body, process.poll()
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert f"running in the foreground: metrics on http://127.0.0.1:{port}/metrics" in output
    assert staged.read_text().count(f"127.0.0.1:{port}") == 1  # kept, never overwritten


def test_install_script_without_systemd_says_so_and_names_the_flag(tmp_path: Path) -> None:
    """A real install to /opt and /etc (not DESTDIR), in a private mount namespace whose /opt
    and /etc are overlays and whose /run has no systemd: it must install, start nothing and
    say how to run the exporter instead."""
    if os.geteuid() != 0:
        pytest.skip("a private mount namespace needs root (CI runs as root)")
    setup = []
    for top in ("etc", "opt"):
        for name in ("upper", "work"):
            (tmp_path / top / name).mkdir(parents=True)
        setup.append(
            f"mount -t overlay overlay -o lowerdir=/{top},upperdir={tmp_path}/{top}/upper,"
            f"workdir={tmp_path}/{top}/work /{top}"
        )
    setup += [
        "mount -t tmpfs tmpfs /run",
        "rm -rf /opt/reachability-exporter /etc/reachability-exporter",
    ]
    script = " && ".join(setup) + ' && exec bash "$0" --no-apt'
    env = {"PATH": f"{Path(tool('python3')).parent}:/usr/sbin:/usr/bin:/sbin:/bin"}
    result = run(tool("unshare"), "--mount", "sh", "-c", script, INSTALL, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "systemd is not running here" in result.stdout
    assert "--foreground" in result.stdout
    upper = tmp_path / "opt/upper/reachability-exporter/bin/reachability-exporter"
    assert upper.is_file()
    assert (tmp_path / "etc/upper/reachability-exporter/config.yaml").is_file()


# ---- The README's quick start and CI ----------------------------------------------------------


def quick_start_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_quick_start_is_get_the_code_install_and_test() -> None:
    commands = quick_start_commands()
    assert len(commands) == 4, commands
    assert commands[0] == "apt-get update && apt-get install -y git"
    assert commands[1].startswith("git clone ")
    assert commands[2] == "./deploy/install.sh"
    assert commands[3] == "bash scripts/test.sh"
    assert os.access(INSTALL, os.X_OK)


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    (command,) = [line.removeprefix("exec ") for line in ci if line.startswith("exec ")]
    assert command == quick_start_commands()[3]


def test_test_script_never_installs_into_the_system_interpreter() -> None:
    """PEP 668: Debian and Ubuntu refuse it, so the suite runs from a virtualenv."""
    script = (REPO / "scripts" / "test.sh").read_text()
    assert "python3-venv" in script
    assert "python3 -m pip" not in script
    assert re.search(r'"\$venv/bin/python" -m pip install .*-e .\.\[test\]', script), script


def test_unit_open_files_limit_fits_the_web_connections_beside_the_probes() -> None:
    """Web clients cannot take the probes' descriptors (exporter/fdlimit.py); the unit must
    give the process at least what the default flags need, or it serves fewer clients."""
    soft, _, hard = unit_settings()["LimitNOFILE"][-1].partition(":")
    assert int(soft) >= fdlimit.needed(DEFAULT_MAX_CONNECTIONS, DEFAULT_CONCURRENCY)
    assert int(soft) <= BACKLOG + DEFAULT_MAX_CONNECTIONS
    assert int(hard or soft) >= int(soft)
