import sys

sys.path.append("../")

from test.examples.stages.basic_stages import get_data, sum_data

from curifactory_cli.manager import ArtifactManager
from curifactory_cli.procedure import Procedure


def run(argsets, manager: ArtifactManager):
    pipeline = Procedure([get_data, sum_data], manager)

    for argset in argsets:
        output = pipeline.run(argset)
        print(output)

    manager.generate_report()
