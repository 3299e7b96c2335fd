"""The run registry: one SQLite row per run (`data/runs.sqlite`) with its parameter sets and
stage calls, as typed records, and each run's log of stage output (`data/logs/`). Below the
run and the report (both read it); above the engine and the store."""
