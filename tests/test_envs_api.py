"""Single envs, registration, family lookup, task samplers and parameter errors."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.base import TaskFamily
from envs.registration import BUILTIN, env_id, get_family

NAMES = list(BUILTIN)


@pytest.mark.filterwarnings("ignore:.*infinity")  # unbounded Box, as Gymnasium's MuJoCo envs
@pytest.mark.parametrize("name", NAMES)
def test_check_env(name):
    family = get_family(name)
    env = family.make_env(family.sample_tasks(np.random.default_rng(0), 1)[0])
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    assert isinstance(reward, float) and isinstance(info, dict) and info
    assert all(k.startswith(("reward_", "x_", "y_", "distance")) for k in info)
    env.close()


@pytest.mark.parametrize("name", NAMES)
def test_make_and_make_vec_by_id(name):
    envs.register()
    envs.register()  # idempotent
    env = gym.make(env_id(name))
    assert env.spec.max_episode_steps == BUILTIN[name][-1]
    env.reset(seed=0)
    env.step(env.action_space.sample())
    env.close()
    venv = gym.make_vec(env_id(name), num_envs=3, vectorization_mode="vector_entry_point")
    assert isinstance(venv, envs.TaskVectorEnv)
    assert (venv.num_envs, venv.num_tasks, venv.episodes_per_task) == (3, 1, 3)
    assert venv.max_episode_steps == BUILTIN[name][-1]
    assert venv.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (3, *venv.single_observation_space.shape)
    obs, reward, terminated, truncated, info = venv.step(venv.action_space.sample())
    assert reward.shape == terminated.shape == truncated.shape == (3,)
    assert all(np.shape(v) == (3,) for v in info.values())
    venv.close()


def test_import_registers_nothing():
    code = (
        "import gymnasium, envs, envs.navigation, envs.mujoco\n"
        "assert not [k for k in gymnasium.registry if k.startswith('metarl/')]\n"
        "envs.register()\n"
        "assert len([k for k in gymnasium.registry if k.startswith('metarl/')]) == 6\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_get_family_by_name_id_and_path():
    assert get_family("HalfCheetahVel").name == "HalfCheetahVel"
    assert get_family("metarl/AntGoal-v0", radius=2.0).radius == 2.0
    family = get_family("envs.navigation:Navigation2DFamily", low=0.0, high=0.1)
    assert isinstance(family, TaskFamily) and family.high == 0.1
    for name in NAMES:
        assert isinstance(get_family(name), TaskFamily)


def test_unknown_family_names():
    with pytest.raises(ValueError, match="did you mean 'HalfCheetahVel'.*known: Navigation2D"):
        get_family("HalfCheetaVel")
    with pytest.raises(ValueError, match="unknown task family 'metarl/Nope-v0'"):
        get_family("metarl/Nope-v0")
    with pytest.raises(ValueError, match="cannot import module 'no_such_module'"):
        get_family("no_such_module:Family")
    with pytest.raises(ValueError, match="has no 'Nope'"):
        get_family("envs.navigation:Nope")
    with pytest.raises(ValueError, match="is not a task family"):
        get_family("envs.navigation:MAX_SPEED")
    with pytest.raises(
        ValueError, match="cannot build task family 'envs.navigation:navigation_step'"
    ):
        get_family("envs.navigation:navigation_step")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: get_family("HalfCheetahVel", low=-1.0), "0.0 <= low <= high"),
        (lambda: get_family("HalfCheetahVel", low=2.0, high=1.0), "low=2.0, high=1.0"),
        (lambda: get_family("AntVel", low=-0.5, high=3.0), "AntVel velocity range"),
        (lambda: get_family("AntGoal", radius=0.0), "radius must be a positive"),
        (lambda: get_family("AntGoal", radius=-3.0), "radius must be a positive"),
        (lambda: get_family("AntGoal", region="circle"), "region must be one of"),
        (lambda: get_family("Navigation2D", low=1.0, high=-1.0), "Navigation2D goal range"),
        (lambda: get_family("AntDir", vectorization="gpu"), "vectorization must be one of"),
        (lambda: get_family("AntDir", max_episode_steps=0), "max_episode_steps must be"),
        (lambda: get_family("HalfCheetahDir").make_env({"velocity": 1.0}), r"keys \['direction'\]"),
        (lambda: get_family("Navigation2D").make_env({"goal": [1, 2, 3]}), r"shape \(2,\)"),
        (lambda: get_family("Navigation2D").make_vector_env([], 2), "non-empty list"),
        (
            lambda: get_family("Navigation2D").make_vector_env([{"goal": [0, 0]}], 0),
            "episodes_per_task",
        ),
        (
            lambda: get_family("HalfCheetahVel", num_threads=0).make_vector_env(
                [{"velocity": 1}], 1
            ),
            "num_threads",
        ),
    ],
)
def test_bad_parameters_are_one_line_value_errors(make, message):
    with pytest.raises(ValueError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_task_samplers():
    rng = np.random.default_rng(0)
    vel = get_family("HalfCheetahVel", low=0.5, high=1.5).sample_tasks(rng, 500)
    v = np.array([t["velocity"] for t in vel])
    assert v.min() >= 0.5 and v.max() <= 1.5 and abs(v.mean() - 1.0) < 0.05
    v = np.array([t["velocity"] for t in get_family("AntVel").sample_tasks(rng, 500)])
    assert v.min() >= 0.0 and v.max() <= 3.0 and v.max() > 2.8
    for name in ("HalfCheetahDir", "AntDir"):
        d = np.array([t["direction"] for t in get_family(name).sample_tasks(rng, 200)])
        assert set(d) == {-1.0, 1.0} and 60 < (d > 0).sum() < 140
    goals = np.stack([t["goal"] for t in get_family("AntGoal", radius=3.0).sample_tasks(rng, 2000)])
    r = np.linalg.norm(goals, axis=1)
    assert r.max() <= 3.0
    assert abs((r < 3.0 / np.sqrt(2)).mean() - 0.5) < 0.05  # area-uniform: half inside r/sqrt(2)
    assert (goals[:, 0] < 0).any() and (goals[:, 1] < 0).any()
    square = get_family("AntGoal", region="square").sample_tasks(rng, 2000)
    goals = np.stack([t["goal"] for t in square])
    assert np.abs(goals).max() <= 3.0 and (np.linalg.norm(goals, axis=1) > 3.0).any()
    assert abs((np.abs(goals) < 1.5).all(axis=1).mean() - 0.25) < 0.03  # uniform: a quarter
    g = np.stack([t["goal"] for t in get_family("Navigation2D").sample_tasks(rng, 500)])
    assert g.shape == (500, 2) and g.min() >= -0.5 and g.max() <= 0.5
    # Same generator state, same tasks.
    a = get_family("AntGoal").sample_tasks(np.random.default_rng(3), 4)
    b = get_family("AntGoal").sample_tasks(np.random.default_rng(3), 4)
    assert all(np.array_equal(x["goal"], y["goal"]) for x, y in zip(a, b, strict=True))


def test_navigation_dynamics():
    env = get_family("Navigation2D").make_env({"goal": np.array([0.15, 0.0])})
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and np.all(obs == 0)
    obs, reward, terminated, _, _ = env.step(
        np.array([3.0, 0.0], dtype=np.float32)
    )  # clipped to 1: full speed 0.1
    np.testing.assert_allclose(obs, [0.1, 0.0], atol=1e-7)
    assert reward == pytest.approx(-0.05) and not terminated
    obs, reward, terminated, _, _ = env.step(np.array([0.5, 0.05], dtype=np.float32))
    assert terminated and reward == pytest.approx(-0.005)


def test_navigation_terminates_in_a_box_around_the_goal():
    """|dx| < 0.01 and |dy| < 0.01, as the original code: (0.009, 0.009) is 0.0127 away."""
    env = get_family("Navigation2D").make_env({"goal": np.array([0.091, 0.091])})
    env.reset(seed=0)
    _, reward, terminated, _, _ = env.step(np.array([1.0, 1.0], dtype=np.float32))
    assert terminated and reward == pytest.approx(-0.009 * np.sqrt(2))
    env = get_family("Navigation2D").make_env({"goal": np.array([0.111, 0.1])})
    env.reset(seed=0)
    assert not env.step(np.array([1.0, 1.0], dtype=np.float32))[2]  # 0.011 off in x


def test_mujoco_threads_follow_the_affinity_mask_not_the_machine():
    import os

    from envs.mujoco.physics import default_num_threads, usable_cpus
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})  # as `taskset -c N`
        assert usable_cpus() == 1
        assert default_num_threads(num_envs=64, num_threads=None) == 1
    finally:
        os.sched_setaffinity(0, before)
    assert usable_cpus() == len(before)


def test_an_unknown_env_kwarg_is_named_with_what_the_family_accepts(tmp_path, capsys):
    from metarl.cli import main
    code = main(["train", "experiments/configs/halfcheetah-vel.yaml", "--run-dir",
                 str(tmp_path / "run"), "--set", "env_kwargs={ctrl_cost_wieght: 0.1}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "unexpected keyword argument 'ctrl_cost_wieght'" in err
    assert "it accepts ctrl_cost_weight, frame_skip" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["Navigation2D", "HalfCheetahVel", "AntGoal"])
@pytest.mark.parametrize("vectorization", ["native", "sync"])
def test_every_builtin_vector_env_meets_the_contract_rl_is_typed_against(name, vectorization):
    from metarl.rl.episodes import TaskEnv
    family = get_family(name, vectorization=vectorization)
    env = family.make_vector_env(family.sample_tasks(np.random.default_rng(0), 2), 3)
    assert isinstance(env, TaskEnv)
    assert (env.num_tasks, env.episodes_per_task, env.num_envs) == (2, 3, 6)
    env.close()


def test_physics_choice_is_checked_and_warp_names_its_install(monkeypatch):
    from envs.mujoco.half_cheetah import HalfCheetahVelFamily

    with pytest.raises(ValueError, match=r"physics must be one of \('mujoco', 'warp'\)"):
        HalfCheetahVelFamily(physics="bullet")
    monkeypatch.setitem(sys.modules, "mujoco_warp", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install -e \"\.\[warp\]\""):
        HalfCheetahVelFamily(physics="warp")  # said when the family is built, before a run
