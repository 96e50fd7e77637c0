"""YAML plumbing for ``alerting.rules``: typed reads of composed nodes, with lines.

The rules file is composed, not loaded, so every value keeps the line it came from
and a mistake is reported where the user typed it. Every read records a problem and
returns ``None`` instead of raising, so one pass reports every mistake in the file.
Type errors name the YAML type found, never the value: a secret pasted into the
wrong key must not end up in a terminal or a CI log.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from core.time import DurationError, parse_duration

__all__ = ["DurationError", "Mapping", "Problems", "RuleProblem", "parse_duration", "suggest"]

_TAG = "tag:yaml.org,2002:"
_TYPE_NAMES = {"str": "a string", "int": "an integer", "float": "a number",
               "bool": "true/false", "null": "an empty value"}  # fmt: skip


def format_duration(seconds: float) -> str:
    """The shortest readable form: 90 -> 1m30s, 86400 -> 1d, 0.5 -> 500ms."""
    if seconds == 0:
        return "0s"
    if seconds < 1 or seconds != int(seconds):
        return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"
    rest, out = int(seconds), ""
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean x or y?)`` for near misses, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


@dataclass(frozen=True)
class RuleProblem:
    """One mistake in a rules file; ``str()`` is ``FILE:LINE: where: message``."""

    line: int
    where: str
    message: str
    file: str = ""

    def __str__(self) -> str:
        loc = ":".join(p for p in (self.file, str(self.line) if self.line else "") if p)
        return f"{loc}: {self.where}: {self.message}" if loc else f"{self.where}: {self.message}"


class Problems:
    """The list every read appends to; sorted by line when the pass is over."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[RuleProblem] = []

    def add(self, at: Node | int, where: str, message: str) -> None:
        line = at if isinstance(at, int) else node_line(at)
        self.items.append(RuleProblem(line, where, message, self.file))

    def sorted(self) -> list[RuleProblem]:
        return sorted(self.items, key=lambda p: p.line)


def node_line(node: Node) -> int:
    return node.start_mark.line + 1


def kind(node: Node) -> str:
    """What the user wrote, in words, for type errors (never the value itself)."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return _TYPE_NAMES.get(node.tag.removeprefix(_TAG), "a tagged value")


def scalar(node: Node) -> object:
    """The Python value of a scalar node, as ``yaml.safe_load`` would build it."""
    return SafeConstructor().construct_object(node, deep=True)


def is_tag(node: Node, *names: str) -> bool:
    return isinstance(node, ScalarNode) and node.tag.removeprefix(_TAG) in names


class Mapping:
    """A mapping node checked against the keys it may hold.

    Non-string keys, duplicate keys and unknown keys are problems; the rest are
    read with the typed getters below, which report and return ``None`` on error.
    """

    def __init__(self, node: MappingNode, where: str, problems: Problems,
                 allowed: Iterable[str]) -> None:  # fmt: skip
        self.node = node
        self.where = where
        self.problems = problems
        self.values: dict[str, Node] = {}
        allowed = tuple(allowed)
        for key_node, value in node.value:
            if is_tag(key_node, "merge"):
                problems.add(key_node, where, "YAML merge keys (<<) are not supported; "
                                              "use the defaults section")  # fmt: skip
                continue
            if not is_tag(key_node, "str"):
                problems.add(key_node, where, f"keys must be strings, not {kind(key_node)}")
                continue
            key = str(key_node.value)
            if key in self.values:
                problems.add(key_node, self.at(key), "duplicate key")
            elif key not in allowed:
                hint = suggest(key, allowed) or f" (expected one of {', '.join(allowed)})"
                problems.add(key_node, self.at(key), f"unknown key{hint}")
            else:
                self.values[key] = value

    @property
    def line(self) -> int:
        return node_line(self.node)

    def at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def line_of(self, key: str) -> int:
        """The value's line, or the mapping's own line when the key is missing."""
        return node_line(self.values[key]) if key in self.values else self.line

    def error(self, key: str, message: str) -> None:
        self.problems.add(self.line_of(key), self.at(key), message)

    def get(self, key: str, required: bool = False) -> Node | None:
        node = self.values.get(key)
        if node is None and required:
            self.problems.add(self.node, self.where or "file", f"missing required key {key!r}")
        return node

    def _wrong(self, key: str, node: Node, expected: str) -> None:
        self.problems.add(node, self.at(key), f"expected {expected}, got {kind(node)}")

    def text(self, key: str, required: bool = False) -> str | None:
        node = self.get(key, required)
        if node is None:
            return None
        if not is_tag(node, "str"):
            self._wrong(key, node, "a non-empty string")
            return None
        if not str(node.value).strip():
            bare = getattr(node, "style", None) in (">", "|")  # op: > is YAML block syntax
            self.error(key, 'is empty: a bare > or | starts a YAML block; quote it (">")'
                       if bare else "must not be empty")  # fmt: skip
            return None
        return str(node.value)

    def number(self, key: str, required: bool = False) -> float | None:
        node = self.get(key, required)
        if node is None:
            return None
        if not is_tag(node, "int", "float"):
            self._wrong(key, node, "a number")
            return None
        value = float(scalar(node))  # type: ignore[arg-type]
        if not math.isfinite(value):
            self.error(key, "must be a finite number")
            return None
        return value

    def integer(self, key: str, required: bool = False) -> int | None:
        node = self.get(key, required)
        if node is None:
            return None
        if not is_tag(node, "int"):
            self._wrong(key, node, "an integer")
            return None
        return int(scalar(node))  # type: ignore[call-overload]

    def duration(self, key: str, required: bool = False) -> float | None:
        node = self.get(key, required)
        if node is None:
            return None
        if not is_tag(node, "str", "int", "float"):
            self._wrong(key, node, "a duration such as 30s, 5m or 1h")
            return None
        try:
            return parse_duration(scalar(node))
        except DurationError as exc:
            self.problems.add(node, self.at(key), str(exc))
            return None

    def sequence(self, key: str, required: bool = False) -> list[Node] | None:
        node = self.get(key, required)
        if node is None:
            return None
        if is_tag(node, "null"):
            return []
        if not isinstance(node, SequenceNode):
            self._wrong(key, node, "a list")
            return None
        return list(node.value)

    def texts(self, key: str, required: bool = False) -> list[tuple[str, Node]] | None:
        """Strings with their nodes (for later checks by line); ``[]`` if empty."""
        items = self.sequence(key, required)
        if items is None:
            return None
        out: list[tuple[str, Node]] = []
        for item in items:
            if is_tag(item, "str") and str(item.value).strip():
                out.append((str(item.value), item))
            else:
                self.problems.add(item, self.at(key), f"expected a string, got {kind(item)}")
        return out

    def text_map(self, key: str) -> dict[str, tuple[str, Node]] | None:
        """A ``{string: string}`` mapping with each value's node; ``None`` if unusable."""
        node = self.get(key)
        if node is None:
            return None
        if is_tag(node, "null"):
            return {}
        if not isinstance(node, MappingNode):
            self._wrong(key, node, "a mapping")
            return None
        out: dict[str, tuple[str, Node]] = {}
        for key_node, value in node.value:
            if not is_tag(key_node, "str"):
                self.problems.add(
                    key_node, self.at(key), f"keys must be strings, not {kind(key_node)}"
                )
                continue
            name = str(key_node.value)
            where = f"{self.at(key)}.{name}"
            if name in out:
                self.problems.add(key_node, where, "duplicate key")
            elif not is_tag(value, "str"):
                self.problems.add(value, where, f"expected a string (quote it), got {kind(value)}")
            else:
                out[name] = (str(value.value), value)
        return out


def compose(text: str) -> Node | None:
    """The node tree of one YAML document (``yaml.YAMLError`` on bad syntax)."""
    return yaml.compose(text, Loader=yaml.SafeLoader)


def syntax_problem(exc: yaml.YAMLError, file: str) -> RuleProblem:
    """One problem at the line the parser stopped on."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else 0
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"{context}: {problem}" if context else str(problem)
    return RuleProblem(line, "yaml", f"invalid YAML: {message}", file)
