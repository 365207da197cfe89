"""best.pt chosen on fixed validation tasks (``validation_tasks``) instead of the
training meta-batches' returns."""

import numpy as np
import pytest
import torch

from envs.navigation import Navigation2DFamily
from metarl.checkpoint import load_checkpoint
from metarl.compare import read_scalars
from metarl.config import load_config
from metarl.models import GaussianPolicy
from metarl.rl.evaluate import load_policy, validation_returns
from metarl.rl.families import make_family
from metarl.rl.train import train

SMALL = ["meta_batch_size=4", "episodes_per_task=4", "horizon=20", "hidden_sizes=[16]",
         "max_kl=0.05", "validation_tasks=3", "validate_every=2", "eval_episodes=3",
         "validation_steps=2", "checkpoint_every=1", "log_every=3"]


def config(*extra):
    return load_config(data={"kind": "rl"}, overrides=SMALL + list(extra))


def test_best_iterate_is_the_best_validated_one(tmp_path):
    cfg = config("iterations=5")
    family = make_family(cfg)
    train(cfg, family, tmp_path, progress=False)
    steps, after_1 = read_scalars(tmp_path, "validation/return_after_1_steps")
    _, after_2 = read_scalars(tmp_path, "validation/return_after_2_steps")
    assert steps == [1, 3, 5]  # iterations 0, 2 and the last (logged as iteration + 1)
    scores = [(a + b) / 2 for a, b in zip(after_1, after_2)]
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["iteration"] == [0, 2, 4][int(np.argmax(scores))]
    assert best["best_return"] == pytest.approx(max(scores))
    # The validation is deterministic: best.pt's policy scores the same again.
    _, _, policy = load_policy(tmp_path, family, "best.pt")
    again = validation_returns(policy, family, cfg)
    assert again[1:].mean() == pytest.approx(max(scores), rel=1e-6)


def test_resume_with_validation_equals_uninterrupted(tmp_path):
    full = config("iterations=4")
    train(full, make_family(full), tmp_path / "full", progress=False)
    # Stopped as a time limit stops it: after its first iteration. (A run trained to
    # iterations=2 and then extended validates at its last iteration, 1, as well, so its
    # best.pt may rightly differ from an uninterrupted 4-iteration run's.)
    stopped = config("iterations=4", "time_limit_minutes=1e-9")
    train(stopped, make_family(stopped), tmp_path / "split", progress=False)
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["iteration"] == 1
    train(full, make_family(full), tmp_path / "split", resume=True, progress=False)
    for name in ("checkpoint.pt", "best.pt"):
        a, b = (load_checkpoint(tmp_path / run / name) for run in ("full", "split"))
        assert a["iteration"] == b["iteration"] and a["best_return"] == b["best_return"]
        for key in a["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), (name, key)


class WithTestSplit(Navigation2DFamily):
    """A family with a held-out split of its own, like Meta-World's."""

    def held_out(self):
        raise AssertionError("validation must not touch the test split")


def test_validation_draws_training_tasks_not_the_test_split():
    cfg = config("iterations=1")
    family = WithTestSplit(max_episode_steps=cfg.horizon)
    torch.manual_seed(0)
    curve = validation_returns(GaussianPolicy(2, 2, (16,)), family, cfg)
    assert curve.shape == (3,) and np.isfinite(curve).all()
