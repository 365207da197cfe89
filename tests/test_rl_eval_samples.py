"""Evaluation with a sample budget per step (``eval_samples``): whole episodes until each
task has at least N steps, as the MAML paper's test scripts collect them (rllab)."""

import json

import numpy as np
import pytest
import torch

from metarl.cli import main
from metarl.config import load_config
from metarl.rl.episodes import Episodes
from metarl.rl.evaluate import (
    _curves,
    adaptation_curves,
    adapted_rollouts,
    load_policy,
    per_episode_mean,
)
from metarl.rl.families import make_family
from metarl.rl.sample_budget import (
    finished_in_lockstep,
    first_episodes_with,
    sample_episodes,
    sample_in_lockstep,
)
from metarl.rl.train import build_policy, train


def episodes_of_lengths(lengths: list[list[int]], horizon: int = 10) -> Episodes:
    """(T, E, H) episodes whose mask runs for the given lengths; reward 1 per step."""
    mask = torch.tensor([[[1.0] * n + [0.0] * (horizon - n) for n in task] for task in lengths])
    T, E, H = mask.shape
    return Episodes(obs=torch.zeros(T, E, H, 2), actions=torch.zeros(T, E, H, 2),
                    rewards=torch.ones(T, E, H), mask=mask)


def test_first_episodes_with_keeps_whole_episodes_until_the_count_is_reached():
    episodes = episodes_of_lengths([[4, 4, 4, 4], [10, 1, 1, 1], [2, 2, 2, 2]])
    kept = first_episodes_with(episodes, 9)
    # task 0: 4 + 4 < 9, the third crosses it; task 1: the first alone; task 2: all four
    assert kept.mask.sum(-1).tolist() == [[4, 4, 4, 0], [10, 0, 0, 0], [2, 2, 2, 2]]
    returns = per_episode_mean(kept.returns(), kept)
    assert returns.tolist() == [4.0, 10.0, 2.0]  # masked-out episodes do not count


def nav_config(*extra):
    return load_config(data={"kind": "rl"}, overrides=[
        "meta_batch_size=2", "episodes_per_task=3", "horizon=20", "hidden_sizes=[8]",
        "inner_lr=0.5", *extra])


def test_sample_episodes_collects_rounds_until_every_task_has_the_samples():
    config = nav_config()
    family = make_family(config)
    tasks = family.sample_tasks(np.random.default_rng(0), 4)
    env = family.make_vector_env(tasks, 3)
    torch.manual_seed(0)
    policy = build_policy(config, env.single_observation_space, env.single_action_space)
    params = {k: v.detach().expand(4, *v.shape) for k, v in policy.named_parameters()}
    one = sample_episodes(env, policy, params, config.horizon, np.random.default_rng(1),
                          torch.Generator().manual_seed(0))
    assert one.episodes_per_task == 3  # no budget: one round, every episode counted
    episodes = sample_episodes(env, policy, params, config.horizon, np.random.default_rng(1),
                               torch.Generator().manual_seed(0), samples=130)
    assert episodes.episodes_per_task % 3 == 0 and episodes.episodes_per_task >= 9
    lengths = episodes.mask.sum(-1)
    counted = lengths > 0
    assert (lengths.sum(1) >= 130).all()
    for t in range(4):  # a prefix of whole episodes, minimal: without its last, below 130
        n = int(counted[t].sum())
        assert counted[t, :n].all() and not counted[t, n:].any()
        assert lengths[t, :n - 1].sum() < 130
    # the first round is the unbudgeted rollout: the same random numbers come first
    assert torch.equal(episodes.obs[:, :3], one.obs)
    env.close()


def test_evaluate_with_samples_writes_them_and_adapts_on_more_data(tmp_path):
    run = tmp_path / "nav"
    config = nav_config("iterations=1")
    family = make_family(config)
    train(config, family, run, progress=False)
    _, _, policy = load_policy(run, family, "best.pt")
    plain, _, tasks = adaptation_curves(policy, family, config, 3, 3, 1, seed=7)
    budget, _, budget_tasks = adaptation_curves(policy, family, config, 3, 3, 1, seed=7,
                                                samples=200)
    assert plain.shape == budget.shape == (3, 2)
    assert np.array_equal([t["goal"] for t in budget_tasks], [t["goal"] for t in tasks])
    assert not np.allclose(plain, budget)  # 200 steps need more than 3 episodes of <= 20
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--tasks", "3", "--steps", "1", "--samples", "200",
                 "--episodes", "3", "--seed", "7", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["samples"] == 200
    assert np.array_equal(np.array(result["per_task"]), budget)


def test_a_budget_adapts_chunks_of_tasks_on_the_same_tasks(tmp_path, monkeypatch):
    from metarl.rl import evaluate

    run = tmp_path / "nav"
    config = nav_config("iterations=1")
    family = make_family(config)
    train(config, family, run, progress=False)
    _, _, policy = load_policy(run, family, "best.pt")
    whole, _, tasks = adaptation_curves(policy, family, config, 5, 3, 1, seed=3, samples=100)
    monkeypatch.setattr(evaluate, "BUDGET_CHUNK", 2)
    chunked, _, chunked_tasks = adaptation_curves(policy, family, config, 5, 3, 1, seed=3,
                                                  samples=100)
    assert np.array_equal([t["goal"] for t in chunked_tasks], [t["goal"] for t in tasks])
    assert chunked.shape == whole.shape == (5, 2) and np.isfinite(chunked).all()
    assert np.allclose(chunked.mean(0), whole.mean(0), atol=5.0)  # same tasks, other noise


@pytest.mark.parametrize("value", ["0", "-5"])
def test_eval_samples_must_be_positive(value):
    from metarl.schema import ConfigError
    with pytest.raises(ConfigError, match="eval_samples"):
        nav_config(f"eval_samples={value}")


def test_a_family_with_max_envs_is_adapted_in_chunks_of_tasks():
    """Meta-World's envs are large (``max_envs``): evaluation then runs the drawn tasks
    a chunk at a time, each chunk as those tasks adapted alone with seed + 1 + c."""
    config = nav_config()
    family = make_family(config)
    torch.manual_seed(0)
    env = family.make_vector_env(family.sample_tasks(np.random.default_rng(0), 1), 1)
    policy = build_policy(config, env.single_observation_space, env.single_action_space)
    env.close()
    family.max_envs = 4  # 2 tasks of 2 episodes at a time
    returns, _, tasks = adaptation_curves(policy, family, config, 5, 2, 1, seed=3)
    drawn = family.sample_tasks(np.random.default_rng(3), 5)
    assert [t["goal"].tolist() for t in tasks] == [t["goal"].tolist() for t in drawn]
    assert returns.shape == (5, 2)
    for c, start in enumerate(range(0, 5, 2)):
        chunk = tasks[start:start + 2]
        alone = _curves(adapted_rollouts(policy, family, config, 0, 2, 1, 3 + 1 + c,
                                         tasks=chunk))[0]
        np.testing.assert_array_equal(returns[start:start + 2], alone)


def lockstep_by_hand(lengths: list[int], envs: int, samples: int) -> set[int] | None:
    """rllab's VectorizedSampler loop, step by step: the episodes (indices, round-major)
    finished at the first step at which they hold ``samples`` steps; None if that step
    lies beyond some env's known episodes."""
    per_env = [lengths[j::envs] for j in range(envs)]
    totals = [sum(e) for e in per_env]
    finished, held, step = set(), 0, 0
    while held < samples:
        step += 1
        if step > min(totals):
            return None
        for j, episodes in enumerate(per_env):
            end = 0
            for r, n in enumerate(episodes):
                end += n
                if end == step:
                    finished.add(r * envs + j)
                    held += n
    return finished


@pytest.mark.parametrize("seed", range(6))
def test_finished_in_lockstep_matches_the_sampler_loop(seed):
    rng = np.random.default_rng(seed)
    envs, rounds = int(rng.integers(1, 5)), int(rng.integers(1, 6))
    lengths = rng.integers(1, 12, size=envs * rounds).tolist()
    for samples in (1, 5, 17, 40, 200):
        expected = lockstep_by_hand(lengths, envs, samples)
        keep = finished_in_lockstep(torch.tensor(lengths, dtype=torch.float32), envs, samples)
        if expected is None:
            assert keep is None
        else:
            assert set(keep.nonzero().flatten().tolist()) == expected


def test_lockstep_favours_short_episodes():
    """Half the episodes last 2 steps, half 20, a budget of one horizon per env: about 60%
    of the lockstep batch are short ones (an episode still running at the stop is
    dropped); the first-episodes rule keeps the drawn mix."""
    rng = np.random.default_rng(0)
    lengths = torch.tensor(rng.choice([2.0, 20.0], size=40 * 60))
    keep = finished_in_lockstep(lengths, 40, 800)
    assert keep is not None
    assert (lengths[keep] == 2).float().mean() > 0.55
    first = first_episodes_with(episodes_of_lengths([[int(n) for n in lengths[:300]]], 20),
                                800)
    counted = first.mask.sum(-1)[0]
    assert abs((counted[counted > 0] == 2).float().mean() - 0.5) < 0.15


def test_sample_in_lockstep_keeps_finished_episodes_up_to_the_budget():
    config = nav_config()
    family = make_family(config)
    tasks = family.sample_tasks(np.random.default_rng(0), 4)
    torch.manual_seed(0)
    probe = family.make_env()
    policy = build_policy(config, probe.observation_space, probe.action_space)
    probe.close()
    params = {k: v.detach().expand(4, *v.shape) for k, v in policy.named_parameters()}
    episodes = sample_in_lockstep(family, tasks, policy, params, config.horizon, 3, 130,
                                  np.random.default_rng(1), torch.Generator().manual_seed(0))
    lengths = episodes.mask.sum(-1)
    assert episodes.num_tasks == 4 and (lengths.sum(1) >= 130).all()
    for t in range(4):  # kept episodes first, then padding with no valid step
        n = int((lengths[t] > 0).sum())
        assert (lengths[t, :n] > 0).all() and not episodes.mask[t, n:].any()
        assert n >= 130 / config.horizon


def test_evaluate_lockstep_records_it_and_needs_a_budget(tmp_path, capsys):
    run = tmp_path / "nav"
    config = nav_config("iterations=1")
    family = make_family(config)
    train(config, family, run, progress=False)
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--tasks", "3", "--steps", "1", "--samples", "100",
                 "--episodes", "3", "--lockstep", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["selection"] == "lockstep" and result["samples"] == 100
    assert np.isfinite(result["per_task"]).all()
    assert main(["evaluate", str(run), "--tasks", "3", "--lockstep"]) != 0
    assert "--lockstep spends a sample budget" in capsys.readouterr().err
