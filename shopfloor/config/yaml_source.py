"""YAML reading that remembers where every key and value came from (line and column).

Built on PyYAML's composer: the node tree carries marks, which we keep in a path → location map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shopfloor.config.errors import ConfigError, ConfigIssue

Loc = tuple[int | str, ...]


@dataclass(frozen=True, slots=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class LocatedDocument:
    """Plain Python data from a YAML file plus the position of every key and list item."""

    file: str
    data: Any
    positions: dict[Loc, Position]

    def position_of(self, loc: Loc) -> Position | None:
        """The position of the deepest existing prefix of ``loc``."""
        for end in range(len(loc), -1, -1):
            pos = self.positions.get(tuple(loc[:end]))
            if pos is not None:
                return pos
        return None


def load_yaml(path: str | Path) -> LocatedDocument:
    """Read ``path``; raise :class:`ConfigError` naming file and line for syntax errors."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(file, None, None, (), f"cannot read file: {exc.strerror}")]) from exc
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str = "<string>") -> LocatedDocument:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        raise ConfigError(
            [ConfigIssue(file, line, col, (), f"YAML syntax error: {exc.problem or exc}")]
        ) from exc
    positions: dict[Loc, Position] = {}
    issues: list[ConfigIssue] = []
    if node is None:
        return LocatedDocument(file, None, {(): Position(1, 1)})
    positions[()] = _pos(node)
    constructor = yaml.SafeLoader("")
    data = _build(node, (), positions, issues, file, constructor)
    if issues:
        raise ConfigError(issues)
    return LocatedDocument(file, data, positions)


def _pos(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def _build(
    node: yaml.Node,
    loc: Loc,
    positions: dict[Loc, Position],
    issues: list[ConfigIssue],
    file: str,
    constructor: yaml.SafeLoader,
) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                p = _pos(key_node)
                issues.append(ConfigIssue(file, p.line, p.column, loc, "mapping keys must be scalars"))
                continue
            child = (*loc, key)
            if key in out:
                p = _pos(key_node)
                first = positions.get(child)
                where = f" (first at line {first.line})" if first else ""
                issues.append(ConfigIssue(file, p.line, p.column, child, f"duplicate key {key!r}{where}"))
                continue
            positions[child] = _pos(key_node)
            out[key] = _build(value_node, child, positions, issues, file, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            child = (*loc, i)
            positions[child] = _pos(item)
            items.append(_build(item, child, positions, issues, file, constructor))
        return items
    return constructor.construct_object(node, deep=True)
