"""experiments/reproduce.py runs a whole (tiny) comparison end to end."""

import runpy
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "experiments" / "reproduce.py"
CONFIG = Path(__file__).resolve().parent.parent / "experiments" / "configs" / "navigation-2d.yaml"


def test_reproduce_writes_figures_and_table(tmp_path, monkeypatch, capsys):
    tiny = ["iterations=1", "meta_batch_size=3", "episodes_per_task=3", "horizon=15",
            "hidden_sizes=[8]"]
    argv = [str(SCRIPT), "--config", str(CONFIG), "--out-dir", str(tmp_path), "--seeds", "0",
            "1", "--tasks", "3", "--steps", "2", *[f"--set={s}" for s in tiny]]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SCRIPT), run_name="__main__")
    table = (tmp_path / "comparison.md").read_text()
    assert "| MAML paper | -40.41 | -11.68 | -3.33 |" in table
    for method in ("maml", "pretrained", "random"):
        assert f"| {method} (2 seeds) |" in table
    # The oracle is drawn and tabulated without adaptation: its 0-step value at every step.
    oracle = next(line for line in table.splitlines() if line.startswith("| oracle, not adapted"))
    cells = [c.strip() for c in oracle.split("|")[2:5]]
    assert cells[0] == cells[1] == cells[2]
    for name in ("comparison.png", "training.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
