"""The names a stage, an output or a path part may have: they become folder and file names
in the cache, so nothing that could escape it or confuse its layout is accepted."""

from __future__ import annotations

import re

from curifactory_cli.errors import GraphError

# Letters of any script (a stage may be called `étape`), digits, '_', '-', '.'.
_NAME_RE = re.compile(r"^\w[\w.\-]{0,99}$")


def check_name(name: str, what: str, stage: str) -> None:
    """Reject names that could escape the cache directory or confuse the layout."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        msg = f"stage {stage!r}: invalid {what} name {name!r}"
        raise GraphError(
            msg,
            hint="use letters (of any alphabet), digits, '_', '-' and '.', not starting with '.' "
            "and without '..', spaces or path separators (at most 100 characters).",
        )
