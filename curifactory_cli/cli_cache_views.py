"""How `curi cache ...` shows what it found: tables, trees and value previews.

rich is imported inside the functions that draw: `curi cache ls` piped to a file or a script
imports none of it.
"""

from __future__ import annotations

import json
from typing import Any


def set_table(
    values: list[tuple[str, Any]], output: str
) -> list[tuple[str, dict[str, Any]]] | None:
    """One row per parameter set (`values`: set name, loaded value) when every value is a JSON
    mapping or scalar: the mapping's values (nested ones as `a.b`), or the scalar under the
    output's name. None when a value is anything else (a DataFrame, an array, a list): those
    do not fit a row."""
    from curifactory_cli.run_params import flat_values
    from curifactory_cli.store.dump import is_json

    rows = []
    for name, value in values:
        if isinstance(value, dict) and is_json(value):
            rows.append((name, flat_values({str(k): v for k, v in value.items()})))
        elif value is None or isinstance(value, (bool, int, float, str)):
            rows.append((name, {output: value}))
        else:
            return None
    return rows


def table_cells(table: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[list[str]]]:
    """Columns (`set`, then every key in first-seen order) and display cells of a table."""
    keys = list(dict.fromkeys(k for _, row in table for k in row))
    cells = [[name, *(_json_cell(row[k]) if k in row else "" for k in keys)] for name, row in table]
    return ["set", *keys], cells


def _json_cell(value: Any) -> str:
    from curifactory_cli.store.dump import display_cell

    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return display_cell(value)
    return json.dumps(value, ensure_ascii=False)
