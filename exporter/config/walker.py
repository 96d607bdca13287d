"""The generic walk over a parsed configuration: shape checks (mappings, lists, booleans,
choices, names, durations) that record located problems instead of stopping at the first,
and the settings every section shares (defined resolvers, inherited interval and timeout)."""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable
from typing import Any

from exporter.config import yamlsource
from exporter.config.model import ResolverSpec
from exporter.config.values import (
    NAME_PATTERN,
    NAME_RE,
    format_duration,
    parse_duration,
    shown,
    type_name,
)
from exporter.errors import Problem

Path = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"[^\s.\[\]'\"]{1,60}")


def dotted(path: Path) -> str:
    """`services.web.checks[0].name`; keys that would blur the path are quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part) and part.isprintable():
            out += f".{part}" if out else part
        else:
            out += f"[{shown(part)}]"
    return out


@dataclasses.dataclass(frozen=True)
class Inherited:
    """Settings that flow from defaults to a service to its checks."""

    interval: float
    timeout: float
    resolver: str
    # False where the value in force failed to parse: nothing is compared with a stand-in.
    interval_ok: bool = True
    timeout_ok: bool = True


class Walker:
    """Walks the parsed YAML once, collecting problems at the line and column of the value
    they are about."""

    def __init__(self, doc: yamlsource.Located) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        for issue in doc.issues:
            line, column = issue.position or doc.position_of(issue.path)
            self.problems.append(Problem(line, dotted(issue.path), issue.message, column))
        self.resolver_names: dict[str, ResolverSpec] = {}
        # Resolvers defined with a bad URL: already reported, so references to them are not.
        self.broken_resolvers: set[str] = set()

    def error(self, path: Path, message: str) -> None:
        line, column = self.doc.position_of(path)
        problem = Problem(line, dotted(path), message, column)
        if problem not in self.problems:
            self.problems.append(problem)

    def mapping(
        self,
        value: Any,
        path: Path,
        allowed: tuple[str, ...],
        misplaced: Callable[[str], str | None] = lambda key: None,
    ) -> dict[str, Any]:
        """`value` as a mapping of its allowed keys; every other key is reported."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, got {type_name(value)}")
            return {}
        for key in value:
            if key in allowed:
                continue
            message = misplaced(key)
            if message is None:
                message = f"unknown key ({did_you_mean(key, allowed)})"
            self.error((*path, key), message)
        return {k: v for k, v in value.items() if k in allowed}

    def listing(self, value: Any, path: Path, *, scalar_ok: bool = False) -> list[tuple[Any, Path]]:
        """Items of a list with their paths; with `scalar_ok`, one value stands for a list of
        one (`address: 192.0.2.1`)."""
        if value is None:
            return []
        if isinstance(value, list):
            return [(item, (*path, i)) for i, item in enumerate(value)]
        if scalar_ok and not isinstance(value, dict):
            return [(value, path)]
        self.error(path, f"must be a list, got {type_name(value)}")
        return []

    def convert(self, value: Any, path: Path, parse: Callable[[Any], Any]) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            self.error(path, str(exc))
            return None

    def text(self, path: Path, value: Any) -> str | None:
        return self.doc.text_of(path, value)

    def boolean(self, value: Any, path: Path, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(path, f"must be true or false, got {shown(value)}")
            return default
        return value

    def choice(self, value: Any, path: Path, choices: tuple[str, ...], default: str) -> str:
        if value is None:
            return default
        text = self.text(path, value)
        if text not in choices:
            self.error(path, f"must be one of {', '.join(choices)}, got {shown(value)}")
            return default
        return text

    def name(self, value: Any, path: Path, what: str) -> str | None:
        text = self.text(path, value)
        if value is None or text == "":
            self.error(path, f"a {what} name is required")
            return None
        if text is None or not NAME_RE.fullmatch(text):
            self.error(
                path, f"invalid {what} name {shown(text or value)}: must match {NAME_PATTERN}"
            )
            return None
        return text

    def duration(self, section: dict[str, Any], path: Path, key: str) -> float | None:
        """The duration under `key`, None if absent or invalid (reported)."""
        if key not in section:
            return None
        value = self.convert(section[key], (*path, key), parse_duration)
        return None if value is None else float(value)

    def inherit(self, section: dict[str, Any], path: Path, base: Inherited) -> Inherited:
        """`base` overridden by the interval, timeout and resolver that `section` sets. A
        timeout not below its interval is reported once, where one of them is set: a bad pair
        in defaults is not repeated for every check that inherits it."""
        interval = self.duration(section, path, "interval")
        timeout = self.duration(section, path, "timeout")
        out = Inherited(
            interval=base.interval if interval is None else interval,
            timeout=base.timeout if timeout is None else timeout,
            resolver=self.resolver_ref(section.get("resolver"), (*path, "resolver"), base.resolver),
            interval_ok=interval is not None if "interval" in section else base.interval_ok,
            timeout_ok=timeout is not None if "timeout" in section else base.timeout_ok,
        )
        if out.interval_ok and out.timeout_ok and out.timeout >= out.interval:
            if timeout is not None:
                self.error(
                    (*path, "timeout"),
                    f"must be shorter than the interval ({format_duration(out.interval)})",
                )
            elif interval is not None:
                self.error(
                    (*path, "interval"),
                    f"must be longer than the timeout ({format_duration(out.timeout)})",
                )
        return out

    def resolver_ref(self, value: Any, path: Path, default: str) -> str:
        if value is None:
            return default
        text = self.text(path, value)
        if text in self.broken_resolvers:
            return default
        if text is None or text not in self.resolver_names:
            written = text if text is not None else value
            self.error(
                path,
                f"unknown resolver {shown(written)} (defined: {', '.join(self.resolver_names)})",
            )
            return default
        return text


def did_you_mean(word: str, known: tuple[str, ...], what: str = "allowed") -> str:
    """`did you mean 'chrome'?` for a near miss, else the list of what is known."""
    close = difflib.get_close_matches(word, known, n=1)
    return f"did you mean {shown(close[0])}?" if close else f"{what}: {', '.join(known)}"
