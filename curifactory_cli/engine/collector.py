"""The garbage collector during a run: paused while the scheduler does its own bookkeeping
(see `pause`), and what survives a full collection set aside while the run builds and winds
up its graph (see `survivors_frozen`).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


def pause() -> tuple[bool, bool]:
    """Turn the collector off while the scheduler settles the graph; `resume` with what this
    returns. (Two calls, not a context manager: interactive use settles once per stage call.)

    It would walk the whole graph again and again while it is being settled, for garbage
    that is not there: the graph is live until the run ends. It stays off for our
    bookkeeping and on while user code runs (see InlineRunner)."""
    collecting = gc.isenabled()
    gc.freeze()
    gc.disable()
    # Inside a run (see survivors_frozen), nothing is frozen while stages run: a stage's
    # own objects, alive at a full collection, would be kept until the run ends.
    in_run = _freeze_survivors in gc.callbacks
    if in_run:
        gc.callbacks.remove(_freeze_survivors)
    return collecting, in_run


def resume(paused: tuple[bool, bool]) -> None:
    """The collector as it was before `pause`."""
    collecting, in_run = paused
    if in_run:  # what the run made lives until its wind-up is done
        gc.freeze()
        gc.callbacks.append(_freeze_survivors)
    else:
        gc.unfreeze()
    if collecting:
        gc.enable()


@contextlib.contextmanager
def survivors_frozen() -> Iterator[None]:
    """While a run loads its parameters, builds its graph and winds up, what survives a full
    collection is set aside (frozen) at once, so that the next full collection walks only
    what is new: the collector otherwise walked the whole growing graph and metadata again
    and again (6% of a run of 50,000 stage calls, against 2% at 5,000). Everything is
    handed back to the collector when the run ends."""
    gc.callbacks.append(_freeze_survivors)
    try:
        yield
    finally:
        gc.callbacks.remove(_freeze_survivors)
        gc.unfreeze()


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    # Right after a full collection every generation was just collected: what is left lives.
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()
