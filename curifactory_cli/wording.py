"""How counts read in what curi prints: "1 stage call", "2 stage calls"."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """`n` and `word`, in the plural (`many`, else word + "s") unless n is 1."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def duration(seconds: float, coarse: bool = False) -> str:
    """A span of time as curi prints it everywhere: how long a run or a stage call took
    (`4.2s`, `2m05s`, `1h02m05s`) or, `coarse`, how old something is or a grace period, to
    the unit that matters (`5s`, `3m`, `2h`, `1d`)."""
    seconds = max(0.0, seconds)
    if coarse:
        for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= span:
                return f"{seconds / span:.0f}{unit}"
        return f"{seconds:.0f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
