"""Records the git revision in the built package (exporter/REVISION), so that an installed
exporter's reachability_exporter_build_info names the commit it was built from. Everything
else is in pyproject.toml."""

from __future__ import annotations

import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithRevision(build_py):
    def run(self) -> None:
        super().run()
        try:
            found = subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=Path(__file__).parent, capture_output=True, text=True, check=False,
            )  # fmt: skip
            revision = found.stdout.strip() if found.returncode == 0 else ""
        except OSError:
            revision = ""
        target = Path(self.build_lib) / "exporter" / "REVISION"
        target.write_text((revision or "unknown") + "\n")


setup(cmdclass={"build_py": BuildPyWithRevision})
