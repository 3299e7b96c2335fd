"""Curifactory's own test suite (ORNL/curifactory v0.20.1 test/, BSD-3: see
tests/curifactory_examples/LICENSE), run against curifactory_cli with only the import lines
changed; tests of a deliberate, README-documented difference are skipped with that reason."""
