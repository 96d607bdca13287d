"""The kinds registry: an entry missing a part, or with a part that cannot work, is refused
when it is declared (at import); the configuration, the README and the verdicts agree with
what the registry declares."""

from __future__ import annotations

import dataclasses
import pathlib
import re
import subprocess
import sys
from typing import Any

import pytest

from exporter.config import COMMON_KEYS, CONNECT_KEYS, ConfigError, QuicOptions, load_text
from exporter.config.kindrules import OptionReader, tls_options
from exporter.config.values import TargetForm
from exporter.kinds import REGISTRY, Evidence, Kind, KindError, _register
from exporter.result import PHASE_CONNECT, PHASE_RESOLVE, PHASE_TLS
from exporter.verdicts import Verdict

ROOT = pathlib.Path(__file__).parent.parent
TLS = REGISTRY["tls"]


def test_a_kind_missing_any_part_cannot_be_declared() -> None:
    parts = {field.name: getattr(TLS, field.name) for field in dataclasses.fields(Kind)}
    for missing in parts:
        with pytest.raises(TypeError, match=missing):
            Kind(**{name: value for name, value in parts.items() if name != missing})


def _not_async(check: Any, env: Any, deadline: float) -> Any:
    return None


@dataclasses.dataclass(frozen=True)
class _TimeoutOptions:
    timeout: float  # every check has `timeout` already


def _timeout_options(reader: OptionReader) -> _TimeoutOptions:
    return _TimeoutOptions(1.0)


@dataclasses.dataclass
class _MutableOptions:
    sni: str


def _mutable_options(reader: OptionReader) -> _MutableOptions:
    return _MutableOptions("x")


BROKEN_PARTS: list[tuple[str, Any, str]] = [
    ("name", "Web Check", "the name must match"),
    ("probe", _not_async, "probe must be an async function"),
    ("target", "host:port", "target must be a TargetForm"),
    ("default_port", 0, "only host:port targets have a default port"),
    ("options", None, "options and parse_options go together"),
    ("parse_options", None, "options and parse_options go together"),
    ("options", QuicOptions, "parse_options must return QuicOptions"),
    ("phases", (), "phases must be some of"),
    ("phases", (PHASE_RESOLVE, PHASE_TLS, PHASE_CONNECT), "in that order"),
    ("phases", (PHASE_RESOLVE, "handshake"), "phases must be some of"),
    ("phases", (PHASE_CONNECT, PHASE_TLS), "phases start with resolve"),
    ("evidence", frozenset({"status_code"}), "evidence must be a frozenset of Evidence"),
    ("verdicts", frozenset(), "verdicts must be a non-empty frozenset"),
    ("verdicts", frozenset({Verdict.OK, Verdict.TLS_RESET}), "ok and error aside"),
    ("verdicts", frozenset({"tls_reset"}), "verdicts must be a non-empty frozenset"),
    ("key_hints", ["resolver"], "key_hints must be a mapping"),
]


@pytest.mark.parametrize(("part", "value", "message"), BROKEN_PARTS)
def test_a_kind_with_a_part_that_cannot_work_is_refused(
    part: str, value: Any, message: str
) -> None:
    with pytest.raises(KindError, match=re.escape(message)):
        dataclasses.replace(TLS, **{part: value})


def test_a_default_port_belongs_to_host_port_targets_only() -> None:
    with pytest.raises(KindError, match="only host:port targets have a default port"):
        dataclasses.replace(REGISTRY["http"], default_port=80)
    assert dataclasses.replace(TLS, target=TargetForm.HOST_PORT, default_port=8443)


def test_options_must_be_a_frozen_dataclass_with_keys_of_its_own() -> None:
    with pytest.raises(KindError, match="frozen dataclass"):
        dataclasses.replace(TLS, options=_MutableOptions, parse_options=_mutable_options)
    with pytest.raises(KindError, match="must not redefine the keys every check has: timeout"):
        dataclasses.replace(TLS, options=_TimeoutOptions, parse_options=_timeout_options)
    assert dataclasses.replace(TLS, options=TLS.options, parse_options=tls_options)


def test_the_registry_refuses_a_kind_twice_and_hints_for_keys_no_kind_has() -> None:
    with pytest.raises(KindError, match="'tls' is declared twice"):
        _register(TLS, REGISTRY["tcp"], TLS)
    stray_hint = dataclasses.replace(TLS, key_hints={"colour": "there is none"})
    with pytest.raises(KindError, match="a hint for 'colour'"):
        _register(*(stray_hint if kind is TLS else kind for kind in REGISTRY.values()))
    own_key_hint = dataclasses.replace(TLS, key_hints={"sni": "it is ours"})
    with pytest.raises(KindError, match="a hint for 'sni'"):
        _register(*(own_key_hint if kind is TLS else kind for kind in REGISTRY.values()))


def test_every_key_a_kind_declares_is_read_by_its_parser() -> None:
    """A key the options dataclass has but the parser ignores would load and do nothing:
    set each to a value no key accepts, and each must be reported where it is."""
    for kind in REGISTRY.values():
        target = {
            TargetForm.NAME: "example.com",
            TargetForm.HOST_PORT: "example.com:443",
            TargetForm.URL: "https://example.com/",
        }[kind.target]
        for key in kind.option_keys:
            check = f"{{name: a, kind: {kind.name}, target: '{target}', {key}: {{x: 1}}}}"
            text = f"services: {{web: {{checks: [{check}]}}}}\n"
            with pytest.raises(ConfigError) as caught:
                load_text(text, "c.yaml")
            paths = [problem.path for problem in caught.value.problems]
            assert f"services.web.checks[0].{key}" in paths, (kind.name, key, paths)


def test_every_kind_takes_the_common_keys_and_only_connecting_kinds_the_connect_keys() -> None:
    for kind in REGISTRY.values():
        assert kind.keys[: len(COMMON_KEYS)] == COMMON_KEYS
        assert (set(CONNECT_KEYS) <= set(kind.keys)) == kind.connects, kind.name
    assert [kind.name for kind in REGISTRY.values() if not kind.connects] == ["dns"]


def test_every_verdict_is_one_that_some_kind_can_give() -> None:
    """A verdict no kind declares would never get its failures counter; a new verdict must
    be declared by the kinds that give it."""
    given = {verdict for kind in REGISTRY.values() for verdict in kind.failure_verdicts}
    assert given | {Verdict.OK} == set(Verdict)


def test_evidence_is_declared_by_the_kinds_whose_probes_record_it() -> None:
    exporting = {e: sorted(k.name for k in REGISTRY.values() if e in k.evidence) for e in Evidence}
    assert exporting == {
        Evidence.DNS_ANSWERS: ["dns"],
        Evidence.CERT_EXPIRY: ["http", "tls", "transfer"],
        Evidence.STATUS_CODE: ["http", "transfer"],
        Evidence.TRANSFER: ["transfer"],
        Evidence.FINGERPRINTS: ["tls"],
    }


def _readme_kind_rows() -> dict[str, tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n### Checks\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.fullmatch(r"\| `([a-z0-9_-]+)` \| (.*?) \| (.*) \|", line)
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


def _readme_target(kind: Kind) -> str:
    if kind.target is TargetForm.NAME:
        return "a domain name"
    if kind.target is TargetForm.URL:
        return "`http://` or `https://` URL"
    return "`host:port`" if kind.default_port is None else f"`host[:{kind.default_port}]`"


def test_the_readme_documents_every_kind_as_the_registry_declares_it() -> None:
    rows = _readme_kind_rows()
    assert list(rows) == list(REGISTRY)
    every_option_key = {key for kind in REGISTRY.values() for key in kind.option_keys}
    for name, (target, options) in rows.items():
        kind = REGISTRY[name]
        assert target == _readme_target(kind), name
        documented = set(re.findall(r"`([a-z_]+)`", options)) & every_option_key
        assert documented == set(kind.option_keys), name


def test_the_readme_names_the_keys_every_check_takes() -> None:
    text = (ROOT / "README.md").read_text()
    intro = text.split("\n### Checks\n", 1)[1].split("\n| kind |", 1)[0]
    assert set(re.findall(r"`([a-z_]+)`", intro)) >= {*COMMON_KEYS, *CONNECT_KEYS}


def test_every_module_imports_first_without_a_cycle() -> None:
    """The registry imports the probes, which import the configuration's model: whichever
    module a program imports first, the import must complete."""
    script = """
import importlib, pkgutil, sys
import exporter
names = [m.name for m in pkgutil.walk_packages(exporter.__path__, "exporter.")]
names.remove("exporter.__main__")  # importing it runs the exporter
for name in names:
    for loaded in [m for m in sys.modules if m == "exporter" or m.startswith("exporter.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ImportError as exc:
        print(name, exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout == ""
