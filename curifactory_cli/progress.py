"""`from curifactory_cli.progress import tqdm`: tqdm's progress bar (a drop-in: same arguments,
same output), which also says how far the stage is, as `record.progress(n, total)` does.

Only the outermost bar reports (a nested bar's steps would hide the stage's own), each time
tqdm redraws it (at most ten times a second by default) and when it closes. tqdm itself is not
a dependency of curi: this module needs it installed.
"""

from __future__ import annotations

from typing import Any

from tqdm import tqdm as _tqdm

from curifactory_cli.capture import report_progress


class tqdm(_tqdm):
    def display(self, msg: str | None = None, pos: int | None = None) -> Any:
        if not getattr(self, "pos", 0):  # the outermost bar (position 0)
            report_progress(self.n, self.total)
        return super().display(msg, pos)


def trange(*args: Any, **kwargs: Any) -> tqdm:
    """`tqdm(range(*args), **kwargs)`, as tqdm's own trange."""
    return tqdm(range(*args), **kwargs)
