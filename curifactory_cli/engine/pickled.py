"""The project classes a pickled output refers to, read from the pickle's opcodes without
unpickling it: their code travels inside the value, so it is part of the output's version.
"""

from __future__ import annotations

import os
from typing import Any

from curifactory_cli.fingerprint import class_fingerprint

# Bytes: a bigger pickle is data (arrays), not objects whose code matters, and reading it
# whole to list its classes would double the memory a run needs for it.
PICKLE_SCAN_LIMIT = 64 << 20
_STRING_OPS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"}
)


def pickled_classes(
    draft: str,
    files: list[dict[str, Any]],
    root: str | None,
    known: dict[str, tuple[int, int, str, bytes]],
) -> list[list[str]]:
    """[module:qualname, fingerprint] of the project classes a pickled file refers to."""
    if root is None:
        return []
    found: dict[str, str] = {}
    for info in files:
        if info["size"] > PICKLE_SCAN_LIMIT:
            continue
        path = f"{draft}{os.sep}{info['path']}"
        seen = known.get(path)
        if seen is not None and seen[3] != b"\x80":
            continue  # written by a cacher, and not a pickle (protocol 2 or later)
        with open(path, "rb") as infile:
            if infile.read(1) != b"\x80":
                continue  # not a pickle (protocol 2 or later)
            infile.seek(0)
            data = infile.read()
        for module, qualname in _pickle_globals(data):
            fingerprint = class_fingerprint(module, qualname, root)
            if fingerprint is not None:
                found[f"{module}:{qualname}"] = fingerprint
    return [[name, found[name]] for name in sorted(found)]


def _pickle_globals(data: bytes) -> set[tuple[str, str]]:
    """(module, qualname) of every class or function a pickle refers to, read from its
    opcodes without unpickling it (strings pushed for STACK_GLOBAL may come from the memo)."""
    import pickletools

    found: set[tuple[str, str]] = set()
    memo: dict[int, Any] = {}
    recent: list[Any] = []
    try:
        for op, arg, _pos in pickletools.genops(data):
            name = op.name
            if name == "GLOBAL":
                module, _, qualname = str(arg).partition(" ")
                found.add((module, qualname))
                recent.append(None)
            elif name == "STACK_GLOBAL":
                if len(recent) >= 2 and isinstance(recent[-2], str) and isinstance(recent[-1], str):
                    found.add((recent[-2], recent[-1]))
                recent.append(None)
            elif name in _STRING_OPS:
                recent.append(arg)
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg or 0)] = recent[-1] if recent else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                recent.append(memo.get(int(arg or 0)))
            else:
                recent.append(None)
            if len(recent) > 8:
                del recent[:-4]
    except Exception:  # not a pickle after all, or truncated: nothing to add
        return found
    return found
