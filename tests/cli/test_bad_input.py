"""Bad input gives exit code 2, one `error:` line naming the culprit, a hint, no traceback of
ours, and leaves the project (and its cache) exactly as it was."""

from __future__ import annotations

import os
import re

import pytest
from experiments_src import COUNT

pytestmark = pytest.mark.usefixtures("job_runner")

TYPED = """
from dataclasses import dataclass

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@dataclass
class CountParams(cf.ExperimentParameters):
    n: int = 1
    label: str = "x"


@cf.stage(inputs=None, outputs=["total"], cachers=[JsonCacher])
def total(record):
    return sum(range(record.params.n))


def run(param_sets, manager):
    for p in param_sets:
        total(cf.Record(manager, p))
"""

GOOD_PARAMS = "- name: a\n  n: 1\n- name: b\n  n: 2\n- name: c\n  n: 3\n"


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def one_stage_experiment(
    decorator: str, body: str, signature: str = "record", after_load: bool = True
) -> str:
    call = "bad(load(cf.Record(manager, p)))" if after_load else "bad(cf.Record(manager, p))"
    return f"""
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher, PickleCacher


@cf.stage(inputs=None, outputs=["numbers"], cachers=[JsonCacher])
def load(record):
    return [1, 2, 3]


{decorator}
def bad({signature}):
    {body}


def run(param_sets, manager):
    for p in param_sets:
        {call}
"""


@pytest.fixture
def counted(project):
    """A project with a working experiment, a params file and an already filled cache."""
    project.write("experiments/count.py", COUNT)
    project.write("params/p.yaml", GOOD_PARAMS)
    result = project.run("count", "params/p.yaml")
    assert result.ok
    assert len(project.entries()) == 6
    return project


def expect_error(project, result, before, *, says=(), hint=None, code=2, traceback_ok=False):
    """The shared contract of a bad-input failure. The one-line check comes last on purpose,
    so a wrapped message still reports every other problem first."""
    out = result.output
    assert result.exit_code == code, out
    if not traceback_ok:
        assert "Traceback" not in out, out
    assert squash("curifactory_cli" + os.sep) not in squash(out), out  # no frames of ours
    lines = out.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(starts) == 1, out
    start = starts[0]
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith("hint:")), len(lines)
    )
    block = squash(" ".join(lines[start:end]))
    for piece in says:
        assert squash(piece) in block, (piece, out)
    hint_lines = [line for line in lines if line.startswith("hint:")]
    if hint is not None:
        assert hint_lines, out
        assert squash(hint) in squash(" ".join(lines[end:])), (hint, out)
    assert project.snapshot() == before, "the project or its cache changed"
    for piece in says:
        assert piece in lines[start], f"error message is not on one line: {piece!r}\n{out}"


# ---------------------------------------------------------------------------------- params files
def test_malformed_yaml_names_file_line_and_column(counted, cli):
    counted.write("params/bad.yaml", "- name: a\n  n: [1, 2\n- name: b\n  n: 3\n")
    before = counted.snapshot()
    result = cli("run", "count", "params/bad.yaml")
    expect_error(counted, result, before, says=["params/bad.yaml:3:7:", "expected ',' or ']'"])


def test_malformed_yaml_bad_indentation(counted, cli):
    counted.write("params/bad.yaml", "- name: a\n  n: 1\n    x: 2\n")
    before = counted.snapshot()
    result = cli("run", "count", "bad")
    expect_error(counted, result, before, says=["bad.yaml:3:"])


def test_yaml_python_tag_is_refused(counted, cli):
    counted.write(
        "params/evil.yaml", "- name: a\n  n: !!python/object/apply:os.system ['touch PWNED']\n"
    )
    before = counted.snapshot()
    result = cli("run", "count", "params/evil.yaml")
    expect_error(counted, result, before, says=["params/evil.yaml:2:"], hint="python tags")
    assert not (counted.root / "PWNED").exists()


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "---\n"])
def test_empty_params_file(counted, cli, text):
    counted.write("params/empty.yaml", text)
    before = counted.snapshot()
    result = cli("run", "count", "params/empty.yaml")
    expect_error(counted, result, before, says=["params/empty.yaml", "empty"], hint="name")


def test_unknown_key_for_parameter_class(project, cli):
    project.write("experiments/typed.py", TYPED)
    project.write("params/t.yaml", "- name: a\n  n: 2\n- name: b\n  n: 3\n  nn: 4\n")
    before = project.snapshot()
    result = cli("run", "typed", "params/t.yaml")
    expect_error(
        project, result, before, says=["params/t.yaml:5", "'b'", "'nn'"], hint="did you mean 'n'"
    )


def test_wrong_type_for_parameter_class(project, cli):
    project.write("experiments/typed.py", TYPED)
    project.write("params/t.yaml", "- name: a\n  label: ok\n  n: three\n")
    before = project.snapshot()
    result = cli("run", "typed", "params/t.yaml")
    expect_error(project, result, before, says=["params/t.yaml:3", "'a'", "'n'", "int"])


def test_missing_required_parameter(project, cli):
    source = TYPED.replace("n: int = 1", "n: int").replace(
        "@dataclass\n", "@dataclass(kw_only=True)\n"
    )
    project.write("experiments/typed.py", source)
    project.write("params/t.yaml", "- name: a\n  label: ok\n")
    before = project.snapshot()
    result = cli("run", "typed", "params/t.yaml")
    expect_error(project, result, before, says=["params/t.yaml:1", "'a'", "'n'", "missing"])


def test_wrong_type_from_set_override(project, cli):
    project.write("experiments/typed.py", TYPED)
    project.write("params/t.yaml", "- name: a\n  n: 2\n")
    before = project.snapshot()
    result = cli("run", "typed", "params/t.yaml", "--set", "n=many")
    expect_error(project, result, before, says=["--set n", "int"])


def test_duplicate_set_names(counted, cli):
    counted.write("params/dup.yaml", "- name: a\n  n: 1\n- name: b\n  n: 2\n- name: a\n  n: 3\n")
    before = counted.snapshot()
    result = cli("run", "count", "params/dup.yaml")
    expect_error(
        counted,
        result,
        before,
        says=["params/dup.yaml:5", "duplicate", "'a'", "line 1"],
        hint="unique",
    )


def test_duplicate_set_names_across_files(counted, cli):
    counted.write("params/more.yaml", "- name: b\n  n: 7\n")
    before = counted.snapshot()
    result = cli("run", "count", "params/p.yaml", "params/more.yaml")
    expect_error(counted, result, before, says=["'b'"], hint="unique")


def test_unknown_params_file_suggests(counted, cli):
    before = counted.snapshot()
    result = cli("run", "count", "pp")
    expect_error(counted, result, before, says=["'pp'"], hint="did you mean 'p'")


# ---------------------------------------------------------------------------------- experiments
def test_unknown_experiment_suggests_close_match(project, cli):
    project.write("experiments/demo.py", COUNT)
    project.write("params/p.yaml", GOOD_PARAMS)
    before = project.snapshot()
    result = cli("run", "dmeo", "p")
    expect_error(project, result, before, says=["'dmeo'"], hint="did you mean 'demo'")


BROKEN_RUNTIME = """
import curifactory_cli as cf


def helper():
    return 1 / 0


VALUE = helper()


def run(param_sets, manager):
    pass
"""

BROKEN_SYNTAX = """
import curifactory_cli as cf


def run(param_sets, manager)
    pass
"""


@pytest.mark.parametrize(
    ("source", "line", "kind"),
    [(BROKEN_RUNTIME, 5, "ZeroDivisionError"), (BROKEN_SYNTAX, 4, "SyntaxError")],
    ids=["raises", "syntax"],
)
def test_experiment_that_fails_to_import(counted, cli, source, line, kind):
    path = counted.write("experiments/broken.py", source)
    before = counted.snapshot()
    result = cli("run", "broken", "p")
    out = result.output
    # The user's own traceback is expected here: it must point at their file and line.
    assert squash(f'File "{path}", line {line}') in squash(out), out
    assert kind in out
    assert "curifactory_cli/discovery.py" not in squash(out)
    expect_error(counted, result, before, says=["'broken'", kind], traceback_ok=True)


def test_experiment_without_run(counted, cli):
    counted.write("experiments/norun.py", '"""No run here."""\nVALUE = 1\n')
    before = counted.snapshot()
    result = cli("run", "norun", "p")
    expect_error(
        counted, result, before, says=["'norun'", "run("], hint="def run(param_sets, manager)"
    )


def test_experiment_without_params_or_get_params(counted, cli):
    before = counted.snapshot()
    result = cli("run", "count")
    expect_error(counted, result, before, says=["'count'"], hint="params/")


# ------------------------------------------------------------------------ stage declarations
def _declaration_case(project, source):
    project.write("experiments/decl.py", source)
    project.write("params/p.yaml", GOOD_PARAMS)
    project.write("experiments/count.py", COUNT)
    assert project.run("count", "params/p.yaml").ok  # a filled cache that must stay untouched
    return project.snapshot()


def test_stage_input_never_produced(project, cli):
    before = _declaration_case(
        project,
        one_stage_experiment(
            '@cf.stage(inputs=["features"], outputs=["out"], cachers=[JsonCacher])',
            "return features",
            "record, features",
        ),
    )
    result = cli("run", "decl", "p")
    expect_error(project, result, before, says=["'bad'", "'features'"], hint="'features'")


def test_wrong_number_of_returned_values(project, cli):
    before = _declaration_case(
        project,
        one_stage_experiment(
            '@cf.stage(inputs=None, outputs=["low", "high"], cachers=[JsonCacher, JsonCacher])',
            "return 1",
            after_load=False,
        ),
    )
    result = cli("run", "decl", "p")
    expect_error(project, result, before, says=["'bad'", "2 outputs"], hint="tuple")


def test_too_many_returned_values(project, cli):
    before = _declaration_case(
        project,
        one_stage_experiment(
            '@cf.stage(inputs=None, outputs=["low", "high"], cachers=[JsonCacher, JsonCacher])',
            "return 1, 2, 3",
            after_load=False,
        ),
    )
    result = cli("run", "decl", "p")
    expect_error(project, result, before, says=["'bad'", "3 values"], hint="tuple")


def test_cachers_count_mismatch(project, cli):
    before = _declaration_case(
        project,
        one_stage_experiment(
            '@cf.stage(inputs=["numbers"], outputs=["low", "high"], cachers=[JsonCacher])',
            "return 1, 2",
            "record, numbers",
        ),
    )
    result = cli("run", "decl", "p")
    expect_error(
        project,
        result,
        before,
        says=["'bad'", "2 output", "1 cacher"],
        hint="one cacher per output",
    )


def test_empty_cachers_list(project, cli):
    before = _declaration_case(
        project,
        one_stage_experiment(
            '@cf.stage(inputs=["numbers"], outputs=["out"], cachers=[])',
            "return 1",
            "record, numbers",
        ),
    )
    result = cli("run", "decl", "p")
    expect_error(project, result, before, says=["'bad'", "empty cachers"], hint="cachers=None")


def test_input_not_in_function_signature(project, cli):
    before = _declaration_case(
        project,
        one_stage_experiment(
            '@cf.stage(inputs=["numbers"], outputs=["out"], cachers=[JsonCacher])',
            "return 1",
            "record",
        ),
    )
    result = cli("run", "decl", "p")
    expect_error(project, result, before, says=["'bad'", "'numbers'"], hint="signature")


@pytest.mark.parametrize("name", ["sub/out", "../escape", "a..b", "..", "/abs"])
def test_output_name_that_could_escape_the_cache(project, cli, name):
    before = _declaration_case(
        project,
        one_stage_experiment(
            f'@cf.stage(inputs=["numbers"], outputs=[{name!r}], cachers=[JsonCacher])',
            "return 1",
            "record, numbers",
        ),
    )
    result = cli("run", "decl", "p")
    expect_error(project, result, before, says=["'bad'", repr(name)], hint="path separators")


# ---------------------------------------------------------------------------------- options
def test_unknown_names_value(counted, cli):
    before = counted.snapshot()
    result = cli("run", "count", "p", "--names", "a", "--names", "bb")
    expect_error(counted, result, before, says=["--names", "'bb'"], hint="did you mean 'b'")


@pytest.mark.parametrize("spec", ["x", "3-1", "1-", "-2", "0-2-4", "1.5"])
def test_bad_indices(counted, cli, spec):
    before = counted.snapshot()
    result = cli("run", "count", "p", "--indices", spec)
    expect_error(counted, result, before, says=["--indices", repr(spec)], hint="--indices 0-2")


def test_indices_selecting_nothing(counted, cli):
    before = counted.snapshot()
    result = cli("run", "count", "p", "--indices", "7")
    expect_error(counted, result, before, says=["no parameter sets"], hint="--indices")


@pytest.mark.parametrize("spec", ["novalue", "=3"])
def test_bad_set_syntax(counted, cli, spec):
    before = counted.snapshot()
    result = cli("run", "count", "p", "--set", spec)
    expect_error(counted, result, before, says=["--set", repr(spec), "KEY=VALUE"], hint="--set")


# ---------------------------------------------------------------------------------- cache writes
JSON_SET = one_stage_experiment(
    '@cf.stage(inputs=["numbers"], outputs=["uniq"], cachers=[JsonCacher])',
    "return set(numbers)",
    "record, numbers",
)


def test_json_cacher_given_a_set(project, cli):
    before = _declaration_case(project, JSON_SET)
    result = cli("run", "decl", "p", "--names", "a")
    out = result.output
    assert result.exit_code not in (0, 2), out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    flat = squash(out)
    assert squash("stage 'bad'") in flat and squash("output 'uniq'") in flat, out
    assert "set" in flat and "PickleCacher" in out, out
    # The already cached `load` entry stays, nothing half-written appears.
    after = project.snapshot()
    new = sorted(set(after) - set(before))
    assert not [p for p in new if "/bad/" in p or "uniq" in p], new
    assert all(after[k] == v for k, v in before.items())
    assert errors[0].startswith("error: stage 'bad'") and "output 'uniq'" in errors[0], out


def _file_as_cache(project):
    project.write("experiments/count.py", COUNT)
    project.write("params/p.yaml", GOOD_PARAMS)
    project.write("not_a_dir", "I am a regular file\n")
    return project.snapshot()


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions"
)
def test_unwritable_cache_dir(project, cli):
    project.write("experiments/count.py", COUNT)
    project.write("params/p.yaml", GOOD_PARAMS)
    project.cache.mkdir(parents=True)
    project.cache.chmod(0o500)
    try:
        before = project.snapshot()
        result = cli("run", "count", "p")
        assert result.exit_code not in (0, 2), result.output
        assert "Traceback" not in result.output
        assert "not writable" in result.output and "--cache" in result.output
        assert project.snapshot() == before
    finally:
        project.cache.chmod(0o700)


def test_cache_path_is_a_regular_file(project, cli):
    before = _file_as_cache(project)
    result = cli("run", "count", "p", "--cache", "not_a_dir")
    out = result.output
    assert result.exit_code != 0, out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    assert "not_a_dir" in squash(out)
    assert "--cache" in out  # the hint says how to pick another cache directory
    assert project.snapshot() == before
    assert (project.root / "not_a_dir").read_text() == "I am a regular file\n"


@pytest.mark.parametrize("case", ["json_set", "cache_is_file"])
def test_cache_write_failure_exit_code_is_1_as_documented(project, cli, case):
    """SPEC: `1 a stage raised / cache write failed`."""
    if case == "json_set":
        _declaration_case(project, JSON_SET)
        result = cli("run", "decl", "p", "--names", "a")
    else:
        _file_as_cache(project)
        result = cli("run", "count", "p", "--cache", "not_a_dir")
    assert result.exit_code == 1, result.output


CYCLE = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(inputs=["b"], outputs=["a"], cachers=[JsonCacher])
def make_a(record, b):
    return b

@cf.stage(inputs=["a"], outputs=["b"], cachers=[JsonCacher])
def make_b(record, a):
    return a

def run(param_sets, manager):
    for p in param_sets:
        make_b(make_a(cf.Record(manager, p)))
"""


def test_stages_that_need_each_other_are_reported_as_a_cycle(counted, cli):
    counted.write("experiments/cycle.py", CYCLE)
    before = counted.snapshot()
    result = cli("run", "cycle", "params/p.yaml")
    expect_error(counted, result, before, says=["'make_a'", "'b'"], hint="form a cycle")
