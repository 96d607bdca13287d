"""The layering of the repository (see "Development" in the README): exporter/ stands alone;
peers/ (the servers and launchers) builds on it alone; lab/ and benchmarks/ use peers/, and
tests/ uses everything. An import against that order is how a test helper ends up inside the
installed exporter, or the lab stops running from a checkout without tests/."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from peers import REPO

# For each top-level package: the project's packages it must not import.
FORBIDDEN = {
    "exporter": {"peers", "lab", "benchmarks", "tests"},
    "peers": {"lab", "benchmarks", "tests"},
    "lab": {"benchmarks", "tests"},
    "benchmarks": {"tests"},
}


def imported_packages(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every absolute import in the file at `path`."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.partition(".")[0]


def violations(package: str, forbidden: set[str]) -> list[str]:
    return [
        f"{path.relative_to(REPO)}:{line}: imports {name}"
        for path in sorted((REPO / package).rglob("*.py"))
        for line, name in imported_packages(path)
        if name in forbidden
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_the_layers_below_it(package: str) -> None:
    assert violations(package, FORBIDDEN[package]) == []


def test_only_the_lab_tests_import_the_lab() -> None:
    # The servers the other tests need live in peers/; the lab's own modules (topology,
    # scenarios, control) are for the lab tests alone.
    found = [
        f"{path.relative_to(REPO)}:{line}"
        for path in sorted((REPO / "tests").glob("*.py"))
        if not path.name.startswith("test_lab")
        for line, name in imported_packages(path)
        if name == "lab"
    ]
    assert found == []


def test_the_layering_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    # Guards the walker itself: a checker that parses nothing would pass everything.
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom tests.conftest import listener\nfrom . import sibling\n")
    assert list(imported_packages(sample)) == [(1, "os"), (2, "tests")]
