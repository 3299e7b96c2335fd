"""How curi words what it prints: counts and spans of time, the same in every command."""

from __future__ import annotations


def test_spans_of_time_read_the_same_in_every_command():
    """One formatter for every span curi prints: a run's duration (`runs ls`), how long a
    stage call has run (heartbeat lines), and, coarse, an entry's age or a grace period."""
    from curifactory_cli.wording import duration

    assert [duration(s) for s in (0.04, 4.2, 59.94, 125, 3725)] == [
        "0.0s",
        "4.2s",
        "59.9s",
        "2m05s",
        "1h02m05s",
    ]
    assert [duration(s, coarse=True) for s in (-1, 42, 180, 7200, 3 * 86400)] == [
        "0s",
        "42s",
        "3m",
        "2h",
        "3d",
    ]
