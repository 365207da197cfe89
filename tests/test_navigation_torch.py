"""Navigation2D as device tensors against the numpy env it mirrors, bit for bit."""

import numpy as np
import pytest
import torch

from envs.navigation import (
    Navigation2DFamily,
    Navigation2DTorchVectorEnv,
    Navigation2DVectorEnv,
    navigation_step,
    navigation_step_torch,
)
from metarl.checkpoint import load_checkpoint
from metarl.cli import main
from metarl.functional import expand_params, params_of
from metarl.models import GaussianPolicy
from metarl.rl.sampler import rollout


def test_step_equals_the_numpy_step():
    rng = np.random.default_rng(0)
    position, goal = rng.uniform(-1, 1, (500, 2)), rng.uniform(-0.5, 0.5, (500, 2))
    action = rng.normal(0, 2, (500, 2)).astype(np.float32).astype(np.float64)
    goal[:50] = position[:50] + 0.1 * np.clip(action[:50], -1, 1) + 0.005  # some reach it
    expected = navigation_step(position, action, goal)
    got = navigation_step_torch(*(torch.as_tensor(x) for x in (position, action, goal)))
    np.testing.assert_array_equal(got[0].numpy(), expected[0])  # positions bit for bit
    np.testing.assert_array_equal(got[2].numpy(), expected[2])
    assert expected[2][:50].all() and not expected[2][50:].all()
    # Distances to one float64 ulp: torch's vectorised CPU sqrt is not always
    # correctly rounded (numpy's is); as float32 rewards they are the same.
    for have, want in [(got[1], expected[1]), *((got[3][k], v) for k, v in expected[3].items())]:
        np.testing.assert_allclose(have.numpy(), want, rtol=3e-16, atol=0)
        np.testing.assert_array_equal(have.float().numpy(), want.astype(np.float32))


def near_goal_tasks(n):
    """Goals at most a few steps from the origin, so that episodes end at different steps."""
    return [{"goal": np.array([0.02 * (i + 1), -0.015 * i])} for i in range(n)]


def test_holding_ended_episodes_matches_the_numpy_env():
    tasks = near_goal_tasks(3)
    reference = Navigation2DVectorEnv(tasks, 2, max_episode_steps=12)
    env = Navigation2DTorchVectorEnv(tasks, 2, max_episode_steps=12)
    obs_ref, _ = reference.reset(seed=0, options={"hold_ended": True})
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs.numpy(), obs_ref)
    rng = np.random.default_rng(1)
    ended_at = set()
    for step in range(15):  # past the horizon: held episodes stay held
        goals = np.repeat(np.stack([t["goal"] for t in tasks]), 2, axis=0)
        toward = np.clip((goals - obs_ref) * 10, -1, 1) + rng.normal(0, 0.3, (6, 2))
        actions = toward.astype(np.float32)
        want = reference.step(actions)
        got = env.step(torch.as_tensor(actions))
        for i in (0, 2, 3):  # observations and flags bit for bit, rewards to one ulp
            np.testing.assert_array_equal(got[i].numpy(), want[i])
        for have, expect in [(got[1], want[1]), *((got[4][k], v) for k, v in want[4].items())]:
            np.testing.assert_allclose(have.numpy(), expect, rtol=3e-16, atol=0)
        obs_ref = want[0]
        ended_at |= {step} if want[2].any() else set()
    assert len(ended_at) >= 1 and got[3].any()  # some terminated, some ran out of time


def test_rollouts_equal_the_native_envs():
    family = Navigation2DFamily()
    tasks = family.sample_tasks(np.random.default_rng(0), 4)
    tasks[0] = {"goal": np.array([0.03, 0.02])}  # ends early
    torch.manual_seed(0)
    policy = GaussianPolicy(2, 2, (16, 16), init_std=0.3)
    params = {k: v.clone() for k, v in expand_params(params_of(policy), 4).items()}
    params["mean.layers.2.weight"][0] = 0  # task 0 heads for its goal: ten steps
    params["mean.layers.2.bias"][0] = torch.tensor([0.03, 0.02])
    params["log_std"][0] = -6
    runs = []
    for vectorization in ("native", "torch"):
        env = family.make_vector_env(tasks, 5, vectorization=vectorization)
        runs.append(rollout(env, policy, params, horizon=100, seed=3,
                            generator=torch.Generator().manual_seed(7)))
    native, on_tensors = runs
    assert native.mask[0].sum() < 500
    for name in ("obs", "actions", "rewards", "mask"):
        torch.testing.assert_close(getattr(on_tensors, name), getattr(native, name),
                                   rtol=0, atol=0)


def test_a_family_without_a_torch_env_says_so():
    from envs.registration import get_family

    with pytest.raises(ValueError, match="HalfCheetahVel has no torch .* vector env"):
        get_family("HalfCheetahVel", vectorization="torch")


def test_training_on_the_torch_env_equals_training_on_the_native_env(tmp_path):
    small = ["--set=meta_batch_size=3", "--set=episodes_per_task=3", "--set=horizon=20",
             "--set=hidden_sizes=[8]", "--set=iterations=2", "--set=eval_episodes=2",
             "--set=eval_samples=null"]
    for name, kwargs in (("native", "{}"), ("torch", "{vectorization: torch}")):
        assert main(["train", "experiments/configs/navigation-2d.yaml", "--quiet",
                     "--run-dir", str(tmp_path / name), f"--set=env_kwargs={kwargs}",
                     *small]) == 0
    native, on_tensors = (load_checkpoint(tmp_path / name / "checkpoint.pt")["model"]
                          for name in ("native", "torch"))
    for key in native:
        assert torch.equal(native[key], on_tensors[key]), key


def test_a_gpu_run_samples_navigation_on_the_device(monkeypatch):
    from metarl.config import ConfigError, load_config
    from metarl.rl.families import make_family

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    auto = load_config("experiments/configs/navigation-2d.yaml")
    assert make_family(auto).vectorization == "torch"
    chosen = load_config("experiments/configs/navigation-2d.yaml",
                         ["env_kwargs={vectorization: native}"])
    assert make_family(chosen).vectorization == "native"  # the user's choice stands
    on_cpu = load_config("experiments/configs/navigation-2d.yaml", ["device=cpu"])
    assert make_family(on_cpu).vectorization == "native"
    assert make_family(load_config("experiments/configs/navigation-2d.yaml",
                                   ["method=oracle"])).name  # oracle: numpy env, no error
    with pytest.raises(ConfigError, match="use vectorization 'native' with method 'oracle'"):
        make_family(load_config("experiments/configs/navigation-2d.yaml",
                                ["method=oracle", "env_kwargs={vectorization: torch}"]))
