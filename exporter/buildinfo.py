"""What reachability_exporter_build_info says: the version, the source revision and the
Python version, as the Go exporters' build_info carries version, revision and goversion."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import resources
from pathlib import Path

from exporter import __version__

# Written into the installed package by setup.py's build step; a checkout asks git instead.
REVISION_FILE = "REVISION"
UNKNOWN = "unknown"


@functools.cache
def revision() -> str:
    """The git commit the exporter was built from, or "unknown" when nobody recorded it."""
    try:
        recorded = resources.files("exporter").joinpath(REVISION_FILE).read_text().strip()
    except OSError:
        recorded = ""
    if recorded:
        return recorded
    source = Path(__file__).resolve().parents[1]
    if not (source / ".git").exists():
        return UNKNOWN
    try:
        found = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return UNKNOWN
    return found.stdout.strip() if found.returncode == 0 and found.stdout.strip() else UNKNOWN


def labels() -> tuple[str, str, str]:
    """(version, revision, pythonversion), in the order of the family's labels."""
    return __version__, revision(), platform.python_version()
