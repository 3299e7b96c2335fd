"""A run of an experiment: the orchestrator that `curi run`, `curi runs reproduce`,
`run_experiment(...)` and a notebook's `ArtifactManager` drive, with what it needs around it:
the project's settings, parameter selection, the run registry and its logs, full stores
(`--store-full`) and signal handling. Above the engine; nothing in the engine or the store
imports it."""
