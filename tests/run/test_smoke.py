from __future__ import annotations

from experiments_src import COUNT


def test_second_run_is_served_from_cache(project):
    project.write("experiments/count.py", COUNT)
    project.write("params/p.yaml", "- name: small\n  n: 3\n")
    first = project.run("count", "params/p.yaml")
    second = project.run("count", "params/p.yaml")
    assert first.ok and second.ok
    assert first.executed() == [("load", "small"), ("total", "small")]
    assert second.executed() == []
    assert second.records[0].state["total"] == 3


def test_cli_run_exit_code_and_summary(project, cli):
    project.write("experiments/count.py", COUNT)
    project.write("params/p.yaml", "- name: small\n  n: 3\n")
    result = cli("run", "count", "params/p.yaml")
    assert result.exit_code == 0, result.output
    assert "2 executed" in result.output
