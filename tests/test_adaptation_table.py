"""experiments/adaptation_table.py: returns and paired gains of RL evaluations."""

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "experiments" / "adaptation_table.py"


def evaluation(path: Path, per_task: list[list[float]], seed: int = 1) -> str:
    curve = {"mean": np.mean(per_task, axis=0).tolist()}
    path.write_text(json.dumps({"per_task": per_task, "seed": seed, "tasks": len(per_task),
                                "curve": curve}))
    return str(path)


def run(argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *argv])
    runpy.run_path(str(SCRIPT), run_name="__main__")


def test_gains_are_paired_per_task(tmp_path, monkeypatch, capsys):
    # Returns spread widely over tasks (1.96 x their standard error: 45.7), but every task
    # gains exactly 2 then 5.
    per_task = [[-50.0, -48.0, -45.0], [0.0, 2.0, 5.0], [30.0, 32.0, 35.0]]
    maml = evaluation(tmp_path / "maml.json", per_task)
    oracle = evaluation(tmp_path / "oracle.json", [[9.0, 1.0, 1.0]] * 3)
    run([f"MAML={maml}", "--oracle", f"oracle={oracle}"], monkeypatch)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| | 0 steps | 1 step | 2 steps | gain after 1 / 2 steps |")
    assert lines[2] == ("| MAML | -6.7 ± 45.7 | -4.7 ± 45.7 | -1.7 ± 45.7 "
                        "| +2.0 ± 0.0 / +5.0 ± 0.0 |")
    assert lines[3] == "| oracle | 9.0 ± 0.0 | 9.0 ± 0.0 | 9.0 ± 0.0 | (not adapted) |"


def test_evaluations_of_other_tasks_are_refused(tmp_path, monkeypatch):
    a = evaluation(tmp_path / "a.json", [[0.0, 1.0]], seed=1)
    b = evaluation(tmp_path / "b.json", [[0.0, 1.0]], seed=2)
    with pytest.raises(SystemExit, match="different tasks"):
        run([f"a={a}", f"b={b}"], monkeypatch)
