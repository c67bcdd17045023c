"""YAML that remembers where each key was written, so errors can name the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edition.errors import ContentError


# keys and values as PyYAML builds them (untyped: whatever the file says); the pydantic
# models check them
class LineDict(dict[Any, Any]):
    """A mapping from YAML that knows the 1-based line of each key (`.lines`)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lines: dict[str, int] = {}
        self.start_line = 1

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.start_line)


# libyaml's parser when present (5x faster); the constructor below stays in Python
class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.start_line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        value = loader.construct_object(value_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "found an unhashable key", key_node.start_mark
            ) from None
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        result[key] = value
        result.lines[str(key)] = key_node.start_mark.line + 1
    return result


def _construct_timestamp(loader: _LineLoader, node: yaml.ScalarNode) -> object:
    # `2026-13-45` looks like a date to YAML's resolver but is none: keep the text, so the
    # key's own check says what is wrong and where, instead of a ValueError escaping.
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def load_yaml(text: str, file: str | Path, first_line: int = 1) -> object:
    """Parse YAML; syntax errors become ContentError with the file and line.

    `first_line` offsets line numbers when the YAML is embedded (front matter).
    """
    try:
        data = yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + first_line if mark else first_line
        raise ContentError(f"invalid YAML: {exc.problem or exc}", file, line) from None
    except yaml.YAMLError as exc:
        raise ContentError(f"invalid YAML: {exc}", file, first_line) from None
    if first_line != 1:
        _shift(data, first_line - 1)
    return data


def _shift(data: object, offset: int) -> None:
    if isinstance(data, LineDict):
        data.start_line += offset
        data.lines = {k: v + offset for k, v in data.lines.items()}
        for value in data.values():
            _shift(value, offset)
    elif isinstance(data, list):
        for value in data:
            _shift(value, offset)
