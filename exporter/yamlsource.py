"""YAML loading that remembers where every value came from, so that each configuration
problem can be reported as FILE:LINE: key.path: message."""

from __future__ import annotations

from typing import Any

import yaml


class YamlSyntaxError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class Located:
    """Plain Python data plus a map from key path (a tuple of keys and indexes) to line."""

    def __init__(self, data: Any, lines: dict[tuple[str | int, ...], int]) -> None:
        self.data = data
        self.lines = lines

    def line_of(self, path: tuple[str | int, ...]) -> int:
        """Line of `path`, or of its nearest ancestor that has one (a missing key is
        reported at the mapping that lacks it)."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)


def load(text: str) -> Located:
    """Parse one YAML document. Duplicate keys are syntax errors: silently keeping the last
    one would hide a mistake."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlSyntaxError(line, f"invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(1, f"invalid YAML: {exc}") from None
    lines: dict[tuple[str | int, ...], int] = {}
    if node is None:
        return Located(None, {(): 1})
    return Located(_convert(node, (), lines), lines)


def _convert(node: yaml.Node, path: tuple[str | int, ...], lines: dict[Any, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if isinstance(key_node, yaml.ScalarNode) and key in out:
                raise YamlSyntaxError(key_node.start_mark.line + 1, f"duplicate key {key!r}")
            child = (*path, str(key))
            out[key] = _convert(value_node, child, lines)
            lines[child] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), lines) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise YamlSyntaxError(node.start_mark.line + 1, "keys must be plain scalars")
    try:
        return yaml.SafeLoader(stream="").construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(node.start_mark.line + 1, f"invalid YAML value: {exc}") from None
