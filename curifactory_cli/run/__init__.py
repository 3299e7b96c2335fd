"""The run layer: parameter sets, and the files and overrides that define them."""
