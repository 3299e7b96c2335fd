"""What the runner reports while it works: a `Reporter` protocol and a silent default.

The core never prints; `report.py` renders these calls with rich, tests record them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from curifactory_cli.graph import Graph, Node
    from curifactory_cli.runner import RunResult


class Reporter(Protocol):
    def run_started(self, graph: Graph) -> None: ...
    def node_started(self, node: Node) -> None: ...
    def node_waiting(self, node: Node) -> None: ...  # another run holds the entry's lock
    def node_finished(self, node: Node) -> None: ...
    def warning(self, message: str) -> None: ...
    def run_finished(self, result: RunResult) -> None: ...


class NullReporter:
    """Reports nothing; warnings are kept so API callers and tests can read them."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def run_started(self, graph: Graph) -> None:
        pass

    def node_started(self, node: Node) -> None:
        pass

    def node_waiting(self, node: Node) -> None:
        pass

    def node_finished(self, node: Node) -> None:
        pass

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    def run_finished(self, result: RunResult) -> None:
        pass
