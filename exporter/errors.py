"""Exceptions the exporter raises about itself (never about a probed target: probes report
target failures as verdicts)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Problem:
    """One configuration problem; line 0 means the file as a whole."""

    line: int
    path: str
    message: str
    column: int = 0  # orders problems on one line; not shown

    def format(self, file: str) -> str:
        """One line, whatever the configuration contained."""
        where = f"{file}:{self.line}" if self.line else file
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{where}: {_printable(text)}"


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class ConfigError(Exception):
    """A configuration that cannot be used; carries every problem found, in file order."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = sorted(problems, key=lambda p: (p.line, p.column))
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [problem.format(self.file) for problem in self.problems]
