"""Verdicts are decided in one layer: every verdict has a deciding function in classify or the
pure DNS judge (the table in exporter/verdicts.py), and no other module of the exporter names
a failure verdict: the layers raise typed failures (exporter/errors.py) instead."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from exporter import classify, errors
from exporter.verdicts import DECIDED_BY, Verdict

EXPORTER = Path(__file__).resolve().parents[1] / "exporter"
DECIDING_MODULES = {"exporter/classify.py", "exporter/dnsjudge.py", "exporter/verdicts.py"}
# Not a decision: the service rollup's fallback for a check without a verdict yet.
ALLOWED_ELSEWHERE = {("exporter/metrics.py", "ERROR")}


def _named_verdicts(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "Verdict"
        and node.attr != "OK"
        and node.attr.isupper()
    }


def test_every_verdict_has_a_deciding_function_that_names_it() -> None:
    assert set(DECIDED_BY) == set(Verdict)
    for verdict, deciders in DECIDED_BY.items():
        if verdict is Verdict.OK:
            assert deciders == ()
            continue
        assert deciders, verdict
        for name in deciders:
            module_name, _, function = name.rpartition(".")
            module = importlib.import_module(module_name)
            assert callable(getattr(module, function)), name
            path = Path(module.__file__ or "")
            assert f"exporter/{path.name}" in DECIDING_MODULES, name
            assert verdict.name in _named_verdicts(path), (verdict, name)


def test_no_module_outside_classify_and_the_dns_judge_names_a_failure_verdict() -> None:
    offenders = []
    for path in sorted(EXPORTER.rglob("*.py")):
        relative = f"exporter/{path.relative_to(EXPORTER)}"
        if relative in DECIDING_MODULES:
            continue
        for name in sorted(_named_verdicts(path)):
            if (relative, name) not in ALLOWED_ELSEWHERE:
                offenders.append(f"{relative}: Verdict.{name}")
    assert offenders == []


def test_no_module_matches_exception_messages_to_decide() -> None:
    # `"refused" in str(exc)` and the like: a decision from our own or a library's wording.
    offenders = []
    for path in sorted(EXPORTER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Compare)
                and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops)
                and any(
                    isinstance(side, ast.Call)
                    and isinstance(side.func, ast.Attribute)
                    and side.func.attr == "lower"
                    and isinstance(side.func.value, ast.Call)
                    and getattr(side.func.value.func, "id", "") == "str"
                    for side in node.comparators
                )
            ):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_every_probe_failure_type_has_a_verdict() -> None:
    def leaves(cls: type[errors.ProbeFailure]) -> list[type[errors.ProbeFailure]]:
        return [cls] + [leaf for sub in cls.__subclasses__() for leaf in leaves(sub)]

    for cls in leaves(errors.ProbeFailure)[1:]:
        failure = (
            cls(Verdict.DNS_NXDOMAIN, "x")  # type: ignore[call-arg]
            if cls is errors.ResolveFailure
            else cls("x")
        )
        assert classify.verdict(failure) in Verdict, cls
