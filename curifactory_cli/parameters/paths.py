"""Parameter paths as a stage's reads name them: dotted names, other keys in brackets as JSON
(`model.depth`, `grid[1]`, `a["x.y"]`); `render_path` and its inverse `parse_path`."""

from __future__ import annotations

import functools
import json

Key = str | int | float | bool | None
Parts = tuple[Key, ...]


def render_path(parts: Parts) -> str:
    out: list[str] = []
    for part in parts:
        if isinstance(part, str) and part and not any(c in part for c in '.[]"'):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{json.dumps(part)}]")
    return "".join(out)


_DECODER = json.JSONDecoder()


@functools.lru_cache(maxsize=4096)  # a lookup parses the same few paths for every candidate
def parse_path(path: str) -> Parts:
    """The keys of a rendered path (render_path's inverse)."""
    parts: list[Key] = []
    i = 0
    while i < len(path):
        if path[i] == "[":
            value, end = _DECODER.raw_decode(path, i + 1)
            if end >= len(path) or path[end] != "]":
                raise ValueError(f"bad parameter path {path!r}")
            parts.append(value)
            i = end + 1
            continue
        if path[i] == "." and parts:
            i += 1
        end = i
        while end < len(path) and path[end] not in ".[":
            end += 1
        if end == i:
            raise ValueError(f"bad parameter path {path!r}")
        parts.append(path[i:end])
        i = end
    return tuple(parts)
