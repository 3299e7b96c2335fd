"""Parameter sets, and the files and overrides that define them: YAML files with their line
numbers, Python `get_params()` files, `--set` overrides and the coercion of values to the
types a parameters class declares. Underneath the run and the Curifactory faces (`params`)."""
