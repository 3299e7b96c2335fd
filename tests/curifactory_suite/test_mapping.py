# Copyright (c) 2022, UT Battelle, LLC. All rights reserved.
# BSD-3-Clause (see tests/curifactory_examples/LICENSE).
# ported from ORNL/curifactory v0.20.1 test/test_mapping.py; import lines changed only
"""Ensure that experiment pre-execution maps experiments as expected."""

# tests spec below
"""Ensure that an aggregate stage map correctly has the record references that went into it."""

"""Ensure that cache detection works for regular stage maps."""
