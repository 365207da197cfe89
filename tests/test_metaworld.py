"""Meta-World families (optional extra): splits, seeding, vector env == single envs,
clear errors, and a MAML-TRPO smoke run with success rates."""

import json

import numpy as np
import pytest

pytest.importorskip("metaworld")

from envs import metaworld as metaworld_env  # noqa: E402
from envs import metaworld_patches  # noqa: E402
from envs.metaworld import MetaWorldEnv, MetaWorldFamily, benchmark, split_tasks  # noqa: E402
from envs.metaworld_patches import MetaWorldOwn  # noqa: E402
from envs.registration import get_family  # noqa: E402
from metarl.cli import main  # noqa: E402
from metarl.rl.evaluate import adaptation_curves, load_policy  # noqa: E402
from metarl.rl.families import make_family  # noqa: E402
from metarl.runs import load_run_config  # noqa: E402


def goals(bench, split):
    _, by_class = split_tasks(bench, split)
    return {name: {t.data for t in tasks} for name, tasks in by_class.items()}


def test_ml1_train_and_test_goals_are_disjoint_and_seeded():
    train, test = goals(benchmark("ML1", "reach-v3", 0), "train"), \
        goals(benchmark("ML1", "reach-v3", 0), "test")
    assert len(train["reach-v3"]) == len(test["reach-v3"]) == 50
    assert not train["reach-v3"] & test["reach-v3"]
    family = MetaWorldFamily("ML1", "reach-v3")
    first = family.sample_tasks(np.random.default_rng(3), 10)
    assert first == family.sample_tasks(np.random.default_rng(3), 10)
    assert len({t["index"] for t in first}) == 10  # no repeats while there are enough goals


def test_ml10_test_classes_are_not_training_classes():
    bench = benchmark("ML10", None, 0)
    train, test = split_tasks(bench, "train")[0], split_tasks(bench, "test")[0]
    assert len(train) == 10 and len(test) == 5 and not set(train) & set(test)
    tasks = MetaWorldFamily("ML10").sample_tasks(np.random.default_rng(0), 20)
    assert len({t["env_name"] for t in tasks}) > 1  # a meta-batch mixes classes


def test_vector_env_steps_like_single_envs():
    family = MetaWorldFamily("ML1", "push-v3", max_episode_steps=15)
    tasks = family.sample_tasks(np.random.default_rng(1), 2)
    venv = family.make_vector_env(tasks, 2)
    actions = np.random.default_rng(2).uniform(-1, 1, size=(15, 4, 4))
    obs, _ = venv.reset(seed=10)
    singles = [family.make_env(t) for t in tasks for _ in range(2)]
    single_obs = [env.reset(seed=10 + i)[0] for i, env in enumerate(singles)]
    np.testing.assert_array_equal(obs, np.stack(single_obs))
    for a in actions:
        obs, reward, *_ = venv.step(a)
        steps = [env.step(a[i]) for i, env in enumerate(singles)]
        np.testing.assert_array_equal(obs, np.stack([s[0] for s in steps]))
        np.testing.assert_array_equal(reward, [s[1] for s in steps])
    venv.close()


def test_bad_input_gets_one_line_errors():
    with pytest.raises(ValueError, match="did you mean 'reach-v3'"):
        get_family("MetaWorldML1", env_name="reech-v3")
    with pytest.raises(ValueError, match="did you mean 'MetaWorldML45'"):
        get_family("MetaWorldML44")
    family = MetaWorldFamily("ML1", "reach-v3")
    held_out = family.held_out().sample_tasks(np.random.default_rng(0), 1)[0]
    with pytest.raises(ValueError, match="a test task given to a train-split env"):
        family.make_env(held_out)


def test_maml_trpo_smoke_run_logs_and_evaluates_success(tmp_path, capsys):
    settings = ["--set", "env=MetaWorldML1", "--set", "env_kwargs={env_name: reach-v3}",
                "--set", "meta_batch_size=2", "--set", "episodes_per_task=2",
                "--set", "horizon=20", "--set", "hidden_sizes=[8]", "--set", "iterations=2",
                "--set", "activation=tanh"]
    run = tmp_path / "run"
    assert main(["train", "experiments/configs/navigation-2d.yaml", "--run-dir", str(run),
                 "--quiet", *settings]) == 0
    assert main(["evaluate", str(run), "--tasks", "3", "--episodes", "2", "--steps", "1",
                 "--checkpoint", "checkpoint.pt"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    assert len(result["success"]["mean"]) == 2
    assert set(result["success"]["per_class"]) == {"reach-v3"}
    assert (run / "evaluation-success.png").exists()
    assert "success" in (run / "evaluation.csv").read_text().splitlines()[0]
    assert result["split"] == "test"
    assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "1", "--steps", "0",
                 "--checkpoint", "checkpoint.pt", "--split", "train",
                 "--out", str(run / "train.json")]) == 0
    assert json.loads((run / "train.json").read_text())["split"] == "train"
    config, _, policy = load_policy(run, make_family(load_run_config(run)), "checkpoint.pt")
    for held_out, split in [(True, "test"), (False, "train")]:
        *_, tasks = adaptation_curves(policy, make_family(config), config, 2, 1, 0, 0,
                                      held_out=held_out)
        assert {task["split"] for task in tasks} == {split}
    capsys.readouterr()
    assert main(["train", "experiments/configs/navigation-2d.yaml", "--run-dir",
                 str(tmp_path / "bad"), "--quiet", *settings,
                 "--set", "env_kwargs={env_name: reach-v3, split: test}"]) != 0
    assert "held out for evaluation" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before anything is written


def test_touching_object_on_arrays_equals_metaworlds():
    """Reference: Meta-World's own loop over data.contact, at every step of a scripted
    pick-place (the gripper closes on the puck: both answers occur)."""
    from metaworld.policies import SawyerPickPlaceV3Policy

    env = MetaWorldEnv(None, "ML1", "pick-place-v3")
    sawyer, policy = env._env, SawyerPickPlaceV3Policy()
    obs, _ = env.reset(seed=0)
    puck = sawyer._get_id_main_object()
    answers = []
    for _ in range(150):
        obs, *_ = env.step(np.clip(policy.get_action(obs), -1, 1))
        for geom in (puck, sawyer.data.geom("leftpad_geom").id):
            fast = metaworld_patches.touching_object(sawyer, geom)
            with MetaWorldOwn():
                assert fast == sawyer.touching_object(geom)
        answers.append(metaworld_patches.touching_object(sawyer, puck))
    env.close()
    assert True in answers and False in answers


def _trajectory(env, task, seed, actions):
    env.set_task(task)
    out = [env.reset(seed=seed)[0]]
    for a in actions:
        obs, reward, *_ = env.step(a)
        out += [obs, np.array([reward])]
    return np.concatenate(out)


def test_a_sub_env_holds_one_sawyer_env_and_reuse_changes_no_trajectory():
    """ML10 sub-envs switch classes every meta-batch: each holds one Sawyer env, idle
    ones wait in a capped pool, and an env that ran other tasks (of another class
    and of its own) steps exactly as a new one."""
    names = list(split_tasks(benchmark("ML10", None, 0), "train")[0])[:3]
    actions = np.random.default_rng(0).uniform(-1, 1, size=(20, 4))
    task = {"env_name": names[0], "index": 1, "split": "train"}
    fresh = MetaWorldEnv(task, "ML10", None)
    expected = _trajectory(fresh, task, 5, actions)
    fresh.close()

    pool = metaworld_env._IDLE
    capacity, pool.capacity = pool.capacity, 2
    try:
        env = MetaWorldEnv({"env_name": names[1], "index": 0, "split": "train"}, "ML10", None)
        for name in [names[2], names[1], names[0], names[2], names[0]]:
            _trajectory(env, {"env_name": name, "index": 2, "split": "train"}, 9, actions[:5])
            assert len(pool) <= 2
        np.testing.assert_array_equal(_trajectory(env, task, 5, actions), expected)
        reused = pool.take(("ML10", None, "train", 0, names[2]), lambda: None)
        assert reused is not None  # the switch back to names[0] left names[2]'s env idle
        reused.close()
        env.close()
    finally:
        pool.capacity = capacity


def test_every_class_steps_as_with_metaworlds_own_functions():
    """All 50 Meta-World v3 classes: observations, rewards and success bit for bit
    equal with metarl's replacements and with Meta-World's own functions."""
    import metaworld

    actions = np.random.default_rng(0).uniform(-1, 1, size=(20, 4))

    def rollout(cls):
        env = cls(seed=3)
        out = [env.reset(seed=1)[0]]
        for a in actions:
            obs, reward, _, _, info = env.step(a)
            out += [obs, [reward, float(info["success"])]]
        env.close()
        return np.concatenate([np.ravel(x) for x in out])

    metaworld_env._import_metaworld()
    classes = metaworld.ALL_V3_ENVIRONMENTS_GOAL_HIDDEN
    assert len(classes) == 50
    for name, cls in classes.items():
        fast = rollout(cls)
        with MetaWorldOwn():
            assert cls._get_curr_obs_combined_no_goal \
                is not metaworld_patches.curr_obs_combined_no_goal
            own = rollout(cls)
        np.testing.assert_array_equal(fast, own, err_msg=name)


def test_matrix_quaternion_is_scipys_bit_for_bit():
    """Random rotations (every branch of Markley's method: each diagonal entry and the
    trace the largest), and matrices scipy orthogonalises first (handed to scipy)."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    matrices = list(Rotation.random(4000, rng=rng).as_matrix())
    matrices += [np.diag(d) for d in ([1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, 1])]
    matrices += [m + rng.normal(scale=s, size=(3, 3)) for m, s in
                 zip(matrices[:30], [1e-11, 1e-6, 1e-2] * 10)]
    branches = set()
    for m in matrices:
        np.testing.assert_array_equal(metaworld_patches.matrix_quaternion(m),
                                      Rotation.from_matrix(m).as_quat())
        branches.add(int(np.argmax([*np.diag(m), np.trace(m)])))
    assert branches == {0, 1, 2, 3}
    assert len(metaworld_patches.quaternion_modules()) == 22


def test_tolerance_for_scalars_is_metaworlds_bit_for_bit():
    from metaworld.utils import reward_utils

    metaworld_env._import_metaworld()
    with MetaWorldOwn():
        own = reward_utils.tolerance
    rng = np.random.default_rng(0)
    sigmoids = ["gaussian", "hyperbolic", "long_tail", "reciprocal", "cosine", "linear",
                "quadratic", "tanh_squared"]
    for _ in range(3000):
        lower = float(rng.uniform(-1, 1))
        bounds = (lower, lower + float(rng.choice([0.0, rng.uniform(0, 1), np.inf])))
        margin = float(rng.choice([0.0, rng.uniform(0.01, 2)]))
        x = rng.uniform(-3, 3)  # np.float64, as Meta-World's distances
        for value in (x, float(x), np.clip(x, *bounds)):
            args = (value, bounds, margin, str(rng.choice(sigmoids)), float(rng.uniform(0.05, 0.9)))
            got, want = metaworld_patches.tolerance(*args), own(*args)
            assert type(got) is type(want) and (got == want or (got != got and want != want))
    assert reward_utils.tolerance is metaworld_patches.tolerance
