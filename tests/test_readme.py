"""The README's "Add a task family" example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_block(section: str) -> str:
    text = README.read_text()
    start = text.index(f"## {section}")
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_add_a_task_family_example_trains(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme_example"}
    exec(compile(python_block("Add a task family"), "README.md", "exec"), namespace)
    run = tmp_path / "runs" / "point-to-target"
    assert (run / "checkpoint.pt").exists() and (run / "config.yaml").exists()
    env = namespace["family"].make_vector_env(namespace["sample_targets"](
        __import__("numpy").random.default_rng(0), 2), 3)
    assert env.num_envs == 6 and env.num_tasks == 2


def test_reproduce_readme_compares_with_the_numbers_the_readme_gives():
    """Every value experiments/reproduce_readme.py checks is written in the README."""
    import runpy

    root = Path(__file__).resolve().parent.parent
    script = runpy.run_path(str(root / "experiments" / "reproduce_readme.py"))
    readme = (root / "README.md").read_text()
    for check in script["CHECKS"]:
        for key, (value, ci) in check.readme.items():
            assert f"{value:g}" in readme or f"{value:.2f}" in readme, (check.name, key, value)
            if ci is not None:
                assert f"{ci:g}" in readme or f"{ci:.2f}" in readme, (check.name, key, ci)
