"""YAML loading that remembers where every value came from, so that each configuration
problem can be reported as FILE:LINE: key.path: message."""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

Path = tuple[str | int, ...]

# Aliases can make a few lines expand into billions of values ("billion laughs"); no real
# configuration comes near this many.
MAX_VALUES = 100_000
# Far deeper than any configuration; PyYAML's scanner slows down with every level.
MAX_DEPTH = 64

_MERGE_TAG = "tag:yaml.org,2002:merge"
_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
# Nothing in a configuration is a date: `2024-01-01` stays the text it is.
_TEXT_TAGS = ("tag:yaml.org,2002:timestamp",)


class YamlSyntaxError(Exception):
    """The text is not one YAML document: nothing after the error can be trusted."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclasses.dataclass(frozen=True)
class Issue:
    """A problem in a document that still parsed: a duplicate key, a key that is not a plain
    scalar, a value that cannot be constructed. Reported with the configuration's own, at
    `position` (line, column) or, without one, where `path` is."""

    path: Path
    message: str
    position: tuple[int, int] | None = None


class Located:
    """Plain Python data plus, for every key path (a tuple of keys and indexes), the line and
    column it came from (of the key, for mapping values) and, for plain scalars, the text as
    written."""

    def __init__(
        self,
        data: Any,
        positions: dict[Path, tuple[int, int]],
        texts: dict[Path, str] | None = None,
        issues: list[Issue] | None = None,
    ) -> None:
        self.data = data
        self.positions = positions
        self.texts = texts or {}
        self.issues = issues or []

    def position_of(self, path: Path) -> tuple[int, int]:
        """Line and column of `path`, or of its nearest ancestor that has them (a missing
        key is reported at the mapping that lacks it)."""
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get((), (1, 1))

    def text_of(self, path: Path, value: Any) -> str | None:
        """`value` as the user wrote it: names such as `123`, `010` or `on` are strings to
        the user, not the integer or boolean YAML makes of them."""
        if isinstance(value, str):
            return value
        if value is None or isinstance(value, list | dict):
            return None
        return self.texts.get(path)


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing to nest deeper than MAX_DEPTH."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                line = event.start_mark.line + 1
                raise YamlSyntaxError(
                    line, f"invalid YAML: nested more than {MAX_DEPTH} levels deep"
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


# libyaml's composer (shipped in PyYAML's wheels) builds the node tree about five times
# faster and in half the memory of the pure-Python one: a 10,000-check file took 6.7 s and
# 59 MB of nodes in Python, 1.4 s and 35 MB in C. Its nodes carry the same marks.
_CLoader: type[Any] | None = getattr(yaml, "CSafeLoader", None)


def _compose_fast(text: str) -> yaml.Node | None:
    """The document's node tree composed by libyaml, or None when it is absent or the text
    is not a document it accepts within MAX_DEPTH. Then the pure-Python loader composes it
    again, because its messages (and its depth limit) are the ones the README documents and
    the invalid-configuration fixtures pin."""
    if _CLoader is None:
        return None
    try:
        depth = 0
        for event in yaml.parse(text, Loader=_CLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    return None
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        node: yaml.Node | None = yaml.compose(text, Loader=_CLoader)
    except (yaml.YAMLError, RecursionError, ValueError):
        return None
    return node


def load(text: str) -> Located:
    """Parse one YAML document. Mapping keys are always the text as written. Duplicate keys
    are problems, not silently resolved: keeping either value would hide a mistake."""
    node = _compose_fast(text)
    if node is not None:
        return _convert(node)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark and "end" in (exc.problem or "") and "stream" in (exc.problem or ""):
            mark = exc.context_mark  # the end of the file is not where the mistake is
        line = mark.line + 1 if mark else 1
        raise YamlSyntaxError(line, _syntax_message(exc)) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise YamlSyntaxError(
            line, f"invalid YAML: character {char!r} (U+{ord(char):04X}) is not allowed"
        ) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(1, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlSyntaxError(1, "invalid YAML: nested too deeply") from None
    if node is None:
        return Located(None, {(): (1, 1)})
    return _convert(node)


def _convert(node: yaml.Node) -> Located:
    converter = _Converter(_shared_nodes(node))
    try:
        data = converter.convert(node, ())
    except RecursionError:
        raise YamlSyntaxError(1, "invalid YAML: nested too deeply") from None
    return Located(data, converter.positions, converter.texts, converter.issues)


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or str(exc)
    if "'\\t'" in problem:
        return "invalid YAML: tab character; indent with spaces"
    if exc.context == "expected a single document in the stream":
        return "invalid YAML: more than one document (a second '---')"
    if exc.context and exc.context_mark and exc.problem_mark:
        return (
            f"invalid YAML: {problem} ({exc.context} started on line {exc.context_mark.line + 1})"
        )
    return f"invalid YAML: {problem}"


def _position(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _is_merge(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _MERGE_TAG


def _shared_nodes(root: yaml.Node) -> set[int]:
    """The ids of the nodes reached more than once (an anchor and its aliases)."""
    seen: set[int] = set()
    shared: set[int] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        if id(node) in seen:
            shared.add(id(node))
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                pending.extend((key, value))
    return shared


class _Converter:
    def __init__(self, shared: set[int]) -> None:
        self.positions: dict[Path, tuple[int, int]] = {}
        self.texts: dict[Path, str] = {}
        self.issues: list[Issue] = []
        self.count = 0
        self.active: set[int] = set()  # collection nodes being converted: alias cycles
        self.constructor = yaml.SafeLoader("")
        # A sequence's items are let go once converted, so that a 10,000-check list never
        # holds its node tree (a third of the peak) and its data at once; not inside an
        # anchored value, which each alias converts again.
        self.shared = shared
        self.in_shared = 0

    def issue(self, path: Path, node: yaml.Node | None, message: str) -> None:
        self.issues.append(Issue(path, message, _position(node) if node else None))

    def convert(self, node: yaml.Node, path: Path, *, record: bool = True) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise YamlSyntaxError(
                node.start_mark.line + 1,
                f"invalid YAML: more than {MAX_VALUES} values (aliases expanding too far?)",
            )
        if record:
            self.positions[path] = _position(node)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.active:
            self.issue(path, None, "an alias cannot refer to a value that contains it")
            return None
        if node.tag not in _COLLECTION_TAGS:
            self.issue(path, node, f"unsupported YAML tag {node.tag!r}")
        self.active.add(id(node))
        shared = id(node) in self.shared
        self.in_shared += shared
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            assert isinstance(node, yaml.SequenceNode)
            return self.sequence(node, path)
        finally:
            self.in_shared -= shared
            self.active.discard(id(node))

    def sequence(self, node: yaml.SequenceNode, path: Path) -> list[Any]:
        items = node.value
        out = []
        for i, item in enumerate(items):
            out.append(self.convert(item, (*path, i)))
            if not self.in_shared:
                items[i] = None
        return out

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        pairs = [(k, v) for k, v in node.value if not _is_merge(k)]
        # `<<: *anchor` merges: keys written in this mapping win over merged ones, and
        # earlier merges over later ones. Merged first, so that written keys' lines win.
        merged: dict[str, Any] = {}
        for merge_node in (v for k, v in node.value if _is_merge(k)):
            sources = (
                merge_node.value if isinstance(merge_node, yaml.SequenceNode) else [merge_node]
            )
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    self.issue(path, merge_node, "'<<' merges only mappings (e.g. <<: *defaults)")
                    break
                value = self.convert(source, path, record=False)
                for key, item in (value or {}).items():
                    merged.setdefault(key, item)
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in pairs:
            if not isinstance(key_node, yaml.ScalarNode):
                self.issue(path, key_node, "a key must be a plain scalar")
                continue
            key = str(key_node.value)
            position = _position(key_node)
            child = (*path, key)
            if key in first_line:
                self.issue(
                    child, key_node, f"duplicate key {key!r} (first on line {first_line[key]})"
                )
                continue
            first_line[key] = position[0]
            if key in merged:
                self.forget(child)
            out[key] = self.convert(value_node, child)
            self.positions[child] = position
        for key, item in merged.items():
            out.setdefault(key, item)
        return out

    def forget(self, path: Path) -> None:
        """Drop what a merged value recorded under `path`: a written value replaces it."""
        size = len(path)
        for table in (self.positions, self.texts):
            for stale in [p for p in table if p[:size] == path]:
                del table[stale]

    def scalar(self, node: yaml.ScalarNode, path: Path) -> Any:
        if not node.style:  # plain: None from PyYAML's composer, '' from libyaml's
            self.texts[path] = str(node.value)
        if node.tag in _TEXT_TAGS:
            return str(node.value)
        try:
            # Taken out of the constructor's memo at once, which would keep every node alive.
            value = self.constructor.construct_object(node, deep=True)
            self.constructor.constructed_objects.pop(node, None)
            return value
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            self.issue(path, node, f"invalid YAML value: {problem}")
            return None
