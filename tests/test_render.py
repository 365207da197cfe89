"""metarl render: a MuJoCo policy before and after adaptation, as a video and a strip."""

import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported (headless)

from metarl.cli import main  # noqa: E402
from metarl.config import load_config  # noqa: E402
from metarl.rl.families import make_family  # noqa: E402
from metarl.rl.train import train  # noqa: E402

TINY = ["env=HalfCheetahDir", "iterations=1", "meta_batch_size=2", "episodes_per_task=2",
        "horizon=8", "hidden_sizes=[8]", "threads=1"]


def test_render_writes_a_tiled_video_and_a_strip(tmp_path, capsys):
    import imageio.v2 as imageio

    from metarl.rl.render import RenderError, render_adaptation

    config = load_config(data={"kind": "rl"}, overrides=TINY)
    family = make_family(config)
    run = tmp_path / "cheetah"
    train(config, family, run, progress=False)
    try:
        render_adaptation(run, family, tmp_path / "v.gif", num_tasks=2, steps=1,
                          size=(48, 64), strip=tmp_path / "s.png")
    except RenderError as err:  # only where the machine has no off-screen GL at all
        pytest.skip(str(err))
    frames = imageio.mimread(tmp_path / "v.gif")
    assert len(frames) == 9  # the reset frame and one per step of the horizon
    assert frames[0].shape[:2] == (2 * 48, 2 * 64)  # rows: tasks, columns: 0 and 1 steps
    assert np.ptp(frames[-1]) > 0  # not a blank image
    assert imageio.imread(tmp_path / "s.png").shape[:2] == (2 * 48, 5 * 2 * 64)
    # Navigation has no renderer: one line, before any work
    nav = load_config(data={"kind": "rl"}, overrides=["iterations=1", "meta_batch_size=2",
                                                      "episodes_per_task=2", "horizon=5"])
    train(nav, make_family(nav), tmp_path / "nav", progress=False)
    assert main(["render", str(tmp_path / "nav"), "--out", str(tmp_path / "n.gif")]) == 2
    assert "MuJoCo families" in capsys.readouterr().err
    assert main(["render", str(run), "--out", str(tmp_path / "v.avi")]) == 2
    assert ".gif or .mp4" in capsys.readouterr().err
