"""The MAML paper's comparison policies: pretrained, random, oracle."""

import numpy as np
import pytest
import torch

from envs.navigation import Navigation2DFamily
from envs.oracle import OracleFamily, task_features
from metarl.checkpoint import load_checkpoint
from metarl.cli import main
from metarl.config import load_config
from metarl.rl.families import make_family
from metarl.rl.train import build_policy, train

SMALL = ["meta_batch_size=4", "episodes_per_task=4", "horizon=20", "hidden_sizes=[16]",
         "iterations=2"]


def config(method):
    return load_config(data={"kind": "rl", "method": method}, overrides=SMALL)


def test_oracle_observation_ends_with_the_task():
    family = OracleFamily(Navigation2DFamily())
    tasks = family.sample_tasks(np.random.default_rng(0), 3)
    env = family.make_vector_env(tasks, 2)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (6, 4) and env.single_observation_space.shape == (4,)
    np.testing.assert_allclose(obs[2:4, 2:], np.stack([tasks[1]["goal"]] * 2), rtol=1e-6)
    new_tasks = family.sample_tasks(np.random.default_rng(1), 3)
    env.set_tasks(new_tasks)
    obs, *_ = env.step(np.zeros((6, 2), np.float32))
    np.testing.assert_allclose(obs[0, 2:], new_tasks[0]["goal"], rtol=1e-6)
    single = family.make_env(tasks[0])
    assert single.reset(seed=0)[0].shape == (4,)
    np.testing.assert_allclose(task_features({"b": 2.0, "a": np.array([1.0, 3.0])}), [1, 3, 2])


@pytest.mark.parametrize("method", ["pretrained", "random", "oracle"])
def test_comparison_methods_train_and_evaluate(tmp_path, method):
    cfg = config(method)
    family = make_family(cfg)
    assert isinstance(family, OracleFamily) == (method == "oracle")
    train(cfg, family, tmp_path / "run", progress=False)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    probe = family.make_env()
    initial = build_policy(cfg, probe.observation_space, probe.action_space).state_dict()
    changed = any(not torch.equal(initial[k], v) for k, v in state["model"].items())
    assert changed == (method != "random")
    assert main(["evaluate", str(tmp_path / "run"), "--steps", "2", "--tasks", "3",
                 "--episodes", "2"]) == 0
