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
