"""YAML text -> plain data plus the ``line:column`` of every key and value.

PyYAML's composer keeps a mark on every node; we walk the node tree once and
remember, for each path of keys and indexes, where its key and its value
start. The loader maps pydantic's error locations back through this table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from gateway.errors import Problem
from gateway.safefile import quoted

Path = tuple[str | int, ...]

try:  # the C loader keeps marks too, and is much faster
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment,unused-ignore]
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader


@dataclass(frozen=True)
class Mark:
    """A 1-based position in a file."""

    line: int
    column: int


@dataclass
class Marked:
    """Parsed data and the positions of its keys and values."""

    data: Any
    keys: dict[Path, Mark] = field(default_factory=dict)
    values: dict[Path, Mark] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def locate(self, path: Path, *, key: bool = False) -> Mark:
        """The best mark for *path*: the deepest known prefix."""
        table = self.keys if key else self.values
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if prefix in table:
                return table[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return Mark(1, 1)


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


#: deeper nesting than any policy needs is refused before the tree is built
MAX_DEPTH = 32
_OPEN = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSE = (yaml.SequenceEndEvent, yaml.MappingEndEvent)
_NODES = (*_OPEN, yaml.ScalarEvent)
#: values (scalars, lists, mappings) in all policy files together: 10,000 grants fit
MAX_NODES = 100_000


def _bounded(text: str, filename: str, max_nodes: int) -> Problem | None:
    """A first pass over the events: no anchors or aliases, no deep nesting.

    An alias shares a node, so a few lines can stand for billions of values
    (billion laughs) or for a node that contains itself (``&a [*a]``). A policy
    never needs either, so both are refused before any tree is built.
    """
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_Loader):
        start = event.start_mark
        mark = Mark(start.line + 1, start.column + 1) if start is not None else Mark(1, 1)
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            what = "anchors and aliases (& and *) are not allowed in a policy"
            return Problem(filename, mark.line, mark.column, what)
        if isinstance(event, _NODES):
            nodes += 1
            if nodes > max_nodes:
                return Problem(filename, mark.line, mark.column, "too many values in the policy")
        if isinstance(event, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                return Problem(filename, mark.line, mark.column, f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, _CLOSE):
            depth -= 1
    return None


def parse_yaml(text: str, filename: str, max_nodes: int = MAX_NODES) -> Marked:
    """Parse one YAML document; syntax errors come back as problems, not raised."""
    loader = _Loader(text)
    try:
        bounded = _bounded(text, filename, max_nodes)
        if bounded is not None:
            return Marked(None, problems=[bounded])
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        return Marked(None, problems=[Problem(filename, line, col, f"invalid YAML: {quoted(what)}")])
    except yaml.YAMLError as exc:
        return Marked(None, problems=[Problem(filename, 1, 1, f"invalid YAML: {quoted(str(exc))}")])
    finally:
        loader.dispose()
    if node is None:
        return Marked({})
    marked = Marked(None)
    try:
        marked.data = _walk(node, (), marked, loader, filename)
    except yaml.MarkedYAMLError as exc:  # e.g. a tag no safe constructor knows
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        detail = exc.problem or exc.context or "invalid YAML"
        return Marked(None, problems=[Problem(filename, line, col, f"invalid YAML: {quoted(detail)}")])
    return marked


_PLAIN_TAGS: dict[type[yaml.Node], str] = {
    yaml.MappingNode: "tag:yaml.org,2002:map",
    yaml.SequenceNode: "tag:yaml.org,2002:seq",
}


def _walk(node: yaml.Node, path: Path, out: Marked, loader: yaml.SafeLoader, filename: str) -> Any:
    out.values[path] = _mark(node)
    plain = _PLAIN_TAGS.get(type(node))
    if plain is not None and node.tag != plain:
        mark = _mark(node)
        message = f"invalid YAML: tag {node.tag!r} is not allowed"
        out.problems.append(Problem(filename, mark.line, mark.column, message))
        return None
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, loader)
            if not isinstance(key, str | int | bool) or key is None:
                mark = _mark(key_node)
                out.problems.append(Problem(filename, mark.line, mark.column, "keys must be plain scalars"))
                continue
            key = str(key)
            if key in result:
                mark = _mark(key_node)
                out.problems.append(
                    Problem(filename, mark.line, mark.column, f"duplicate key {quoted(repr(key))}")
                )
                continue
            out.keys[(*path, key)] = _mark(key_node)
            result[key] = _walk(value_node, (*path, key), out, loader, filename)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*path, i), out, loader, filename) for i, item in enumerate(node.value)]
    return _scalar(node, loader)


_TIMESTAMP = "tag:yaml.org,2002:timestamp"


def _scalar(node: yaml.Node, loader: yaml.SafeLoader) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return node  # a mapping or sequence used as a key: rejected by the caller
    if node.tag == _TIMESTAMP:
        return node.value  # a date stays text, as JSON Schema validators see it; fields parse it
    return loader.construct_object(node, deep=True)
