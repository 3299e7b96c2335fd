"""Parameter files' YAML: read safely, with the line of every mapping and key kept for
messages, and measured before use (aliases can make a small file describe a huge tree)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from curifactory_cli.errors import ParamsError
from curifactory_cli.hashing import MAX_DEPTH
from curifactory_cli.hashing import MAX_NODES as MAX_VALUES


class LineMapping(dict[Any, Any]):
    """A dict that remembers the line of each key (1-based) and its own line."""

    line: int = 0
    key_lines: dict[str, int]


class LineError(Exception):
    """A problem the loader found at a node: its line, the message and a hint."""

    def __init__(self, node: yaml.Node, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.line, self.message, self.hint = node.start_mark.line + 1, message, hint


# libyaml's parser when available (about 7x faster); the constructors stay the safe ones.
_SafeBase = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LineLoader(_SafeBase):  # type: ignore[misc,valid-type] # yaml's C or Python loader
    """A safe YAML loader that records line numbers; no other constructors are added."""


def _construct_mapping(loader: LineLoader, node: yaml.MappingNode) -> Iterable[LineMapping]:
    data = LineMapping()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise LineError(key_node, "a mapping key must be a plain value") from None
        if key in data:
            raise LineError(
                key_node, f"duplicate key {key!r}", "each key may appear once per mapping."
            )
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[str(key)] = key_node.start_mark.line + 1


LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)

# PyYAML resolves plain scalars by YAML 1.1, where a float needs a dot and a signed exponent:
# `1e-3` and `1E5` stay strings, and typed sets fail or untyped ones compute with text. Floats
# are read as YAML 1.2's core schema writes them; this pattern only adds the forms 1.1 misses
# (an exponent without a dot or without a sign), so every value read before reads the same.
_FLOAT_12 = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$")
LineLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+.0123456789"))


def read_yaml(path: Path) -> Any:
    """The document of a YAML file; every problem a ParamsError naming the file (and line)."""
    text = _read_text(path)
    try:
        return yaml.load(text, Loader=LineLoader)
    except LineError as exc:
        raise ParamsError(f"{path}:{exc.line}: {exc.message}", exc.hint) from None
    except yaml.YAMLError as exc:
        raise _syntax_error(path, exc) from None
    except RecursionError:
        raise ParamsError(f"{path}: the document is nested too deeply") from None
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        # A scalar the safe constructors reject (`2001-13-45`, `!!int abc`, huge integers).
        problem = " ".join(str(exc).split()) or type(exc).__name__
        raise ParamsError(
            f"{path}: a value cannot be read: {problem}",
            hint="quote values that are meant as text, e.g. '2001-13-45'.",
        ) from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    except OSError as exc:
        raise ParamsError(f"{path}: cannot be read: {exc.strerror}") from None


def _syntax_error(path: Path, exc: yaml.YAMLError) -> ParamsError:
    """The parser's complaint, with its line and column when it has them."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        problem = " ".join(str(exc).split())
        return ParamsError(f"{path}: invalid YAML: {problem}")
    mark = exc.problem_mark or exc.context_mark
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
    hint = None
    if "constructor" in problem or "tag" in problem:
        hint = "only plain YAML is accepted (no python tags); values are loaded safely."
    return ParamsError(f"{where}: {problem}", hint)


def check_size(path: Path, doc: Any) -> None:
    """Refuse documents that contain themselves or expand (through aliases) beyond reason.

    Aliases make a small file describe a huge tree; merging sets and hashing would walk all of
    it, so it is measured once, here, before anything else touches it.
    """
    budget = MAX_VALUES
    active: set[int] = set()
    stack: list[tuple[Any, int, bool]] = [(doc, 0, False)]
    while stack:
        node, depth, leaving = stack.pop()
        if leaving:
            active.discard(id(node))
            continue
        budget -= 1
        if budget < 0:
            raise ParamsError(
                f"{path}: the document expands to more than {MAX_VALUES:,} values",
                hint="is it an alias bomb? write the values out or use fewer aliases.",
            )
        if depth > MAX_DEPTH:
            raise ParamsError(f"{path}: the document is nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, (dict, list)):
            if id(node) in active:
                raise ParamsError(
                    f"{path}: the document contains itself (an alias inside its own anchor)",
                    hint="an anchor cannot be used inside the value it names.",
                )
            active.add(id(node))
            stack.append((node, depth, True))
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1, False) for child in children)


def line_of(mapping: Any, key: str | None = None) -> int | None:
    """The line of `key` in a mapping read from YAML, else of the mapping; None if unknown."""
    if not isinstance(mapping, LineMapping):
        return None
    if key is not None and key in mapping.key_lines:
        return mapping.key_lines[key]
    return mapping.line


def where(path: Path, line: int | None) -> str:
    """`file:line` for messages, or the file alone when the line is unknown."""
    return f"{path}:{line}" if line else str(path)


def key_lines(*mappings: Any) -> dict[str, int]:
    """The line of each key over several mappings, highest priority first."""
    lines: dict[str, int] = {}
    for mapping in mappings:
        if isinstance(mapping, LineMapping):
            for key, line in mapping.key_lines.items():
                lines.setdefault(key, line)
    return lines
