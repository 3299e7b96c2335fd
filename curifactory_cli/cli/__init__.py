"""The `curi` command: typer commands (one module per command group: `app` for run, plan,
ls and config; `cache`, `runs`, `report`) over the Python API, and the views that render
what they return (`console`, `cache_views`). Nothing below this package imports it."""


def main() -> None:
    """The `curi` console script (imported only when it runs, so that importing the
    package's views stays cheap)."""
    from curifactory_cli.cli.app import main as run

    run()
