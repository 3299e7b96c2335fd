# Copyright (c) 2022, UT Battelle, LLC. All rights reserved.
# BSD-3-Clause (see tests/curifactory_examples/LICENSE).
# ported from ORNL/curifactory v0.20.1 test/test_base.py; import lines changed only
# Added: skip marks on the tests of a difference README.md documents (reasons in
# differences.py).
import pytest  # import lines changed: for the skip marks
import sys

sys.path.append("test/examples")

from experiments import basic
from params.basic import Args
from stages.basic_stages import get_data, sum_data

from curifactory_cli.manager import ArtifactManager
from curifactory_cli.procedure import Procedure
from .differences import CONFIG  # import lines changed: skip reasons
# from curifactory_cli.utils import get_configuration: not provided (curi.toml)


def test_import():
    """Importing the library should not throw errors!"""
    import curifactory_cli  # noqa: F401 -- we're just trying to make sure it doesn't break


@pytest.mark.skip(reason=CONFIG)
def test_ensure_config(configuration):
    """This is just to make sure the autouse fixture is doing what I expect."""
    assert get_configuration() == configuration


def test_experiment():
    manager = ArtifactManager(dry=True)
    basic.run(
        [
            Args(name="test1", starting_data=[1, 2, 3, 4]),
            Args(name="test2", starting_data=[4, 5, 6]),
        ],
        manager,
    )
    assert manager.records[0].state["sum"] == 10
    assert manager.records[1].state["sum"] == 15


def test_lone_procedure(configuration):
    proc = Procedure([get_data, sum_data], manager=ArtifactManager(dry=True))
    record = proc.run(Args(starting_data=[2, 3]))
    assert record.output == 5
