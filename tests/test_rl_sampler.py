"""The rollout sampler: shapes, masks, per-task parameters, seeding."""

import numpy as np
import pytest
import torch

from envs.navigation import Navigation2DFamily
from metarl.functional import call, expand_params, params_of, select_task
from metarl.models import CategoricalPolicy, GaussianPolicy
from metarl.rl.sampler import rollout


def setup(num_tasks=3, per_task=4, seed=0):
    family = Navigation2DFamily()
    tasks = family.sample_tasks(np.random.default_rng(seed), num_tasks)
    env = family.make_vector_env(tasks, per_task)
    torch.manual_seed(seed)
    policy = GaussianPolicy(2, 2, (16, 16), init_std=0.5)
    return env, policy, expand_params(params_of(policy), num_tasks)


def test_shapes_and_masks_follow_terminations():
    env, policy, params = setup()
    episodes = rollout(env, policy, params, horizon=100, seed=1,
                       generator=torch.Generator().manual_seed(0))
    assert episodes.obs.shape == (3, 4, 100, 2) and episodes.actions.shape == (3, 4, 100, 2)
    assert episodes.rewards.shape == episodes.mask.shape == (3, 4, 100)
    # The mask is 1 up to the end of each episode, then 0, never 1 again.
    diffs = episodes.mask[..., 1:] - episodes.mask[..., :-1]
    assert (diffs <= 0).all()
    assert (episodes.rewards[episodes.mask == 0] == 0).all()
    # Rewards are minus the distance to each task's goal after the move.
    goals = torch.tensor(np.stack([t["goal"] for t in env.tasks]), dtype=torch.float32)
    first_pos = episodes.obs[:, :, 1]  # position after the first step
    expected = -(first_pos - goals[:, None]).norm(dim=-1)
    torch.testing.assert_close(episodes.rewards[:, :, 0], expected, rtol=1e-5, atol=1e-5)


def test_early_termination_is_masked():
    env, policy, params = setup(num_tasks=2, per_task=2)
    # A policy that heads straight for the goal reaches it and terminates early.
    goal = torch.tensor(env.tasks[0]["goal"], dtype=torch.float32)
    params = {k: v.clone() for k, v in params.items()}
    last = "mean.layers.2"
    params[f"{last}.weight"][0] = 0
    params[f"{last}.bias"][0] = goal  # velocity 0.1 * goal: ten steps to the goal
    params["log_std"][0] = -20
    episodes = rollout(env, policy, params, horizon=100, seed=0,
                       generator=torch.Generator().manual_seed(0))
    lengths = episodes.mask.sum(-1)
    assert (lengths[0] < 100).all() and (lengths[0] >= 10).all()
    assert (lengths[1] == 100).all()


def test_each_task_uses_its_own_parameters():
    env, policy, params = setup()
    params = {k: v.clone() for k, v in params.items()}
    params["log_std"][1] = -20  # task 1: near-deterministic
    episodes = rollout(env, policy, params, horizon=5, seed=1,
                       generator=torch.Generator().manual_seed(0))
    mean_1 = call(policy, select_task(params, 1), episodes.obs[1]).mean
    torch.testing.assert_close(episodes.actions[1], mean_1, atol=1e-6, rtol=0)
    mean_0 = call(policy, select_task(params, 0), episodes.obs[0]).mean
    assert (episodes.actions[0] - mean_0).abs().mean() > 0.1


def test_same_seeds_same_episodes():
    env, policy, params = setup()
    run = lambda s, g: rollout(env, policy, params, 20, seed=s,
                               generator=torch.Generator().manual_seed(g))
    a, b, c = run(1, 0), run(1, 0), run(1, 1)
    assert torch.equal(a.obs, b.obs) and torch.equal(a.actions, b.actions)
    assert not torch.equal(a.actions, c.actions)


def test_categorical_policy_samples_integer_actions():
    from metarl.rl.sampler import sample_action

    policy = CategoricalPolicy(3, 4, (8,))
    params = expand_params(params_of(policy), 2)
    dist = call(policy, params, torch.randn(2, 5, 3))
    actions = sample_action(dist, torch.Generator().manual_seed(0))
    assert actions.shape == (2, 5) and actions.dtype == torch.int64
    assert ((actions >= 0) & (actions < 4)).all()


def test_episodes_with_held_ends_equal_those_of_a_sync_vector_env():
    """Native Ant envs hold episodes that ended; SyncVectorEnv autoresets them: same data."""
    from envs.mujoco.ant import AntVelFamily

    family = AntVelFamily(max_episode_steps=50, num_threads=2)
    tasks = family.sample_tasks(np.random.default_rng(0), 2)
    torch.manual_seed(0)
    policy = GaussianPolicy(27, 8, (16,), init_std=3.0)  # wild actions: the ant falls
    params = expand_params(params_of(policy), 2)
    runs = {}
    for vectorization in ("native", "sync"):
        env = family.make_vector_env(tasks, 3, vectorization=vectorization)
        runs[vectorization] = rollout(env, policy, params, horizon=50, seed=3,
                                      generator=torch.Generator().manual_seed(0))
        env.close()
    native, sync = runs["native"], runs["sync"]
    assert (native.mask.sum(-1) < 50).any()  # some episodes ended early
    for field in ("obs", "actions", "rewards", "mask"):
        torch.testing.assert_close(getattr(native, field), getattr(sync, field), rtol=0, atol=0)
    assert (native.obs[native.mask == 0] == 0).all()



@pytest.mark.parametrize("bad, step, raises", [
    ((float("inf"),), 1, True), ((float("nan"),), 2, True),
    ((float("inf"), float("-inf")), 1, True),  # a row whose sum is nan
    ((3e38, 3e38), 1, False),                  # finite, but its float32 sum overflows
    ((float("nan"),), 3, False),               # after the episode ended: padding
])
def test_check_finite_names_the_first_bad_running_step(bad, step, raises):
    from metarl.rl.episodes import Episodes
    from metarl.rl.sampler import EnvOutputError, _check_finite
    obs = torch.zeros(2, 3, 4, 5)
    obs[1, 2, step, :len(bad)] = torch.tensor(bad)
    mask = torch.ones(2, 3, 4)
    mask[1, 2, 3:] = 0  # episode (1, 2) ended after 3 steps
    episodes = Episodes(obs=obs, actions=torch.zeros(2, 3, 4, 1), rewards=torch.zeros(2, 3, 4),
                        mask=mask)
    if raises:
        with pytest.raises(EnvOutputError, match=f"non-finite observation \\(task 1, "
                                                 f"episode 2, step {step}\\)"):
            _check_finite(object(), episodes)
    else:
        _check_finite(object(), episodes)
