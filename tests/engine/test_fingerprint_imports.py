"""What a stage's key sees of the modules a function imports in its own body: the same project
code as an import at the top of the module would give it (a helper imported inside a stage
used to be invisible: editing it served the old result)."""

from __future__ import annotations

import json
import sys

import pytest

LIB = """
def f(x):
    return x + 1


def unrelated(x):
    return x - 1
"""

STAGE = """
import importlib

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(inputs=None, outputs=["v"], cachers=[JsonCacher])
def compute(record):
    x = record.params.x
{body}


def run(param_sets, manager):
    for p in param_sets:
        compute(cf.Record(manager, p))
"""

# Every way of importing a helper inside the stage's body, and the name `plan` gives for it.
FORMS = {
    "from-import": ("from helpers.lib import f\nreturn f(x)", "helpers.lib.f"),
    "import-as": ("import helpers.lib as L\nreturn L.f(x)", "helpers.lib.f"),
    "dotted-import": ("import helpers.lib\nreturn helpers.lib.f(x)", "helpers.lib.f"),
    "from-package-import-module": ("from helpers import lib\nreturn lib.f(x)", "helpers.lib.f"),
    "relative-from-import": ("from .shared import f\nreturn f(x)", "experiments.shared.f"),
    "relative-module-import": ("from . import shared\nreturn shared.f(x)", "experiments.shared.f"),
    "importlib-literal": (
        'return importlib.import_module("helpers.lib").f(x)',
        "helpers.lib.f",
    ),
    "import_module-imported-inside": (
        'from importlib import import_module\nreturn import_module("helpers.lib").f(x)',
        "helpers.lib.f",
    ),
    "inside-a-nested-function": (
        "def inner(v):\n    from helpers.lib import f\n    return f(v)\nreturn inner(x)",
        "helpers.lib.f",
    ),
    "inside-a-lambda": (
        'g = lambda v: importlib.import_module("helpers.lib").f(v)\nreturn g(x)',
        "helpers.lib.f",
    ),
}


def forget(*prefixes: str) -> None:
    for name in list(sys.modules):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            del sys.modules[name]


@pytest.fixture
def helpers(project):
    """A project package `helpers` (and `experiments/shared.py`), imported afresh by each run."""
    project.write("helpers/__init__.py", "")
    project.write("helpers/lib.py", LIB)
    project.write("experiments/__init__.py", "")
    project.write("experiments/shared.py", LIB)
    project.write("params/p.yaml", "- name: a\n  x: 1\n")
    yield project
    forget("helpers")


def run(project, *args, **options):
    forget("helpers")
    return project.run(*args, **options)


def plan_reasons(cli, experiment: str) -> dict[str, str]:
    forget("helpers")
    plan = json.loads(cli("plan", experiment, "params/p.yaml", "--json").stdout)
    return {n["stage"]: n["reason"] for n in plan["nodes"]}


def body(code: str) -> str:
    return "\n".join("    " + line for line in code.splitlines())


@pytest.mark.parametrize("form", FORMS, ids=list(FORMS))
def test_editing_a_helper_imported_inside_the_stage_reruns_it(helpers, cli, form):
    code, label = FORMS[form]
    helpers.write("experiments/inner.py", STAGE.format(body=body(code)))
    assert run(helpers, "inner", "params/p.yaml").records[0].state["v"] == 2
    assert run(helpers, "inner", "params/p.yaml").executed() == []
    # Another function in the same module is not part of the stage's code.
    edited = "experiments/shared.py" if label.startswith("experiments.") else "helpers/lib.py"
    helpers.write(edited, LIB.replace("x - 1", "x - 2"))
    assert run(helpers, "inner", "params/p.yaml").executed() == []
    # The function it calls is.
    helpers.write(edited, LIB.replace("x + 1", "x + 100"))
    assert plan_reasons(cli, "inner") == {"compute": f"stage code changed (helper {label})"}
    again = run(helpers, "inner", "params/p.yaml")
    assert again.executed() == [("compute", "a")]
    assert again.records[0].state["v"] == 101


def test_imports_inside_a_followed_helper_are_followed_too(helpers, cli, job_runner):
    """A project function the stage calls imports, in its body and relatively, the code
    that changes: with worker processes too."""
    helpers.write(
        "helpers/outer.py",
        """
        def go(x):
            from .lib import f
            return f(x) * 10
        """,
    )
    helpers.write(
        "experiments/chain.py",
        STAGE.format(body=body("from helpers.outer import go\nreturn go(x)")),
    )
    assert run(helpers, "chain", "params/p.yaml").records[0].state["v"] == 20
    helpers.write("helpers/lib.py", LIB.replace("x + 1", "x + 2"))
    assert plan_reasons(cli, "chain") == {"compute": "stage code changed (helper helpers.lib.f)"}
    assert run(helpers, "chain", "params/p.yaml").records[0].state["v"] == 30


def test_a_module_reached_from_two_functions_follows_the_names_each_uses(helpers):
    """The stage uses `L.f`; a helper it calls uses `L.unrelated` of the same module: an edit
    to either re-runs the stage, whichever of the two reached the module first."""
    helpers.write(
        "experiments/both.py",
        """
        import curifactory_cli as cf
        import helpers.lib as L
        from curifactory_cli.caching import JsonCacher


        def helper(x):
            return L.unrelated(x)


        @cf.stage(inputs=None, outputs=["v"], cachers=[JsonCacher])
        def compute(record):
            return [L.f(record.params.x), helper(record.params.x)]


        def run(param_sets, manager):
            for p in param_sets:
                compute(cf.Record(manager, p))
        """,
    )
    assert run(helpers, "both", "params/p.yaml").records[0].state["v"] == [2, 0]
    helpers.write("helpers/lib.py", LIB.replace("x - 1", "x - 5"))
    again = run(helpers, "both", "params/p.yaml")
    assert again.executed() == [("compute", "a")]
    assert again.records[0].state["v"] == [2, -4]


def test_a_project_namespace_package_is_followed(project):
    """`nspace/` has no __init__.py: its modules are still the project's code."""
    project.write("nspace/tools.py", LIB)
    project.write("params/p.yaml", "- name: a\n  x: 1\n")
    project.write(
        "experiments/ns.py",
        """
        import curifactory_cli as cf
        import nspace.tools
        from curifactory_cli.caching import JsonCacher


        @cf.stage(inputs=None, outputs=["v"], cachers=[JsonCacher])
        def compute(record):
            return nspace.tools.f(record.params.x)


        def run(param_sets, manager):
            for p in param_sets:
                compute(cf.Record(manager, p))
        """,
    )
    try:
        assert run(project, "ns", "params/p.yaml").records[0].state["v"] == 2
        project.write("nspace/tools.py", LIB.replace("x + 1", "x + 7"))
        forget("nspace")
        assert run(project, "ns", "params/p.yaml").records[0].state["v"] == 8
    finally:
        forget("nspace")


OPTIONAL = """
    try:
        from helpers.extra import tweak
    except ImportError:
        return x
    return tweak(x)
"""


def test_a_project_module_that_appears_later_reruns_the_stage(helpers):
    """An optional helper that did not exist: when it is created the result changes, so the
    key does too."""
    helpers.write("experiments/opt.py", STAGE.format(body=OPTIONAL.strip("\n")))
    assert run(helpers, "opt", "params/p.yaml").records[0].state["v"] == 1
    assert run(helpers, "opt", "params/p.yaml").executed() == []
    helpers.write("helpers/extra.py", "def tweak(x):\n    return x * 50\n")
    again = run(helpers, "opt", "params/p.yaml")
    assert again.executed() == [("compute", "a")]
    assert again.records[0].state["v"] == 50


def test_installed_modules_imported_inside_a_stage_are_not_imported_to_plan(
    helpers, cli, tmp_path_factory, monkeypatch
):
    """A module outside the project (an installed package) is neither followed nor imported
    by `plan`: it counts by its version, and a heavy import stays in the stage."""
    site = tmp_path_factory.mktemp("site")
    (site / "heavylib.py").write_text(
        "import pathlib\npathlib.Path('imported.flag').write_text('yes')\n"
        "def f(x):\n    return x + 1\n"
    )
    monkeypatch.syspath_prepend(str(site))
    helpers.write(
        "experiments/lib.py", STAGE.format(body=body("import heavylib\nreturn heavylib.f(x)"))
    )
    try:
        assert plan_reasons(cli, "lib") == {"compute": "not computed yet"}
        assert not (helpers.root / "imported.flag").exists()
        assert run(helpers, "lib", "params/p.yaml").records[0].state["v"] == 2
        (site / "heavylib.py").write_text("def f(x):\n    return x + 3\n")
        forget("heavylib")
        assert run(helpers, "lib", "params/p.yaml").executed() == []
    finally:
        forget("heavylib")


def test_a_helper_that_fails_to_import_fails_the_stage_not_the_plan(helpers, cli):
    helpers.write(
        "helpers/broken.py", "raise RuntimeError('needs a GPU')\ndef f(x):\n    return x\n"
    )
    helpers.write(
        "experiments/brk.py", STAGE.format(body=body("from helpers.broken import f\nreturn f(x)"))
    )
    forget("helpers")
    plan = cli("plan", "brk", "params/p.yaml")
    assert plan.exit_code == 0, plan.output
    forget("helpers")
    result = cli("run", "brk", "params/p.yaml")
    assert result.exit_code != 0
    assert "needs a GPU" in result.output
    # Fixed: it runs, and the fix is what the key saw.
    helpers.write("helpers/broken.py", "def f(x):\n    return x * 9\n")
    assert run(helpers, "brk", "params/p.yaml").records[0].state["v"] == 9
