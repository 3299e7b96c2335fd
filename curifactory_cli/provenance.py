"""Where a result came from: git commit and dirty flag, library versions, the run itself."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=8)
def git_info(root: str) -> dict[str, Any]:
    """The full commit and whether the work tree has changes (untracked files count)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=normal")
    return {"commit": commit.strip(), "dirty": bool(status and status.strip())}


def library_versions() -> dict[str, str]:
    """Versions of Python, this package and the data libraries already imported (none loaded)."""
    from curifactory_cli import __version__

    versions = {"python": platform.python_version(), "curifactory_cli": __version__}
    for name in ("pandas", "numpy", "pyarrow", "torch"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = str(getattr(module, "__version__", "?"))
    return versions


def host_info() -> dict[str, Any]:
    return {"host": platform.node(), "pid": os.getpid(), "platform": platform.platform()}
