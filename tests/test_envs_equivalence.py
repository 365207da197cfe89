"""Native batched envs give the same trajectories as SyncVectorEnv of single envs."""

import mujoco
import numpy as np
import pytest

from envs.mujoco.ant import AntDirFamily, AntGoalFamily, AntVelFamily
from envs.mujoco.half_cheetah import HalfCheetahDirFamily, HalfCheetahVelFamily
from envs.navigation import MAX_SPEED, Navigation2DFamily

TOL = {"rtol": 1e-9, "atol": 1e-9}


def assert_same_step(native, sync):
    """Compare (obs, reward, terminated, truncated, info) of one vector step."""
    for a, b in zip(native[:4], sync[:4], strict=True):
        np.testing.assert_allclose(a, b, **TOL)
    info_native, info_sync = native[4], sync[4]
    for key, value in info_sync.items():
        if key.startswith("_"):
            continue
        mask = info_sync[f"_{key}"]  # sync infos are absent for sub-envs that just reset
        np.testing.assert_allclose(info_native[key][mask], value[mask], **TOL)


def run_both(
    family, tasks, episodes_per_task, steps, seed, action_scale=1.0, native_kwargs=None, policy=None
):
    """Step native and sync envs with the same actions; return #terminations.

    Actions: ``policy(obs, rng)`` if given, else uniform in the action box times ``action_scale``.
    """
    native = family.vector_env_cls(
        tasks,
        episodes_per_task,
        max_episode_steps=family.max_episode_steps,
        **(native_kwargs or {}),
    )
    sync = family.make_vector_env(tasks, episodes_per_task, vectorization="sync")
    assert native.num_envs == sync.num_envs == len(tasks) * episodes_per_task
    obs_native, _ = native.reset(seed=seed)
    obs_sync, _ = sync.reset(seed=seed)
    np.testing.assert_allclose(obs_native, obs_sync, **TOL)
    assert obs_native.dtype == obs_sync.dtype
    rng = np.random.default_rng(seed)
    high = native.single_action_space.high
    done_before = np.zeros(native.num_envs, dtype=bool)
    n_done = 0
    for _ in range(steps):
        if policy is not None:
            actions = policy(obs_native, rng).astype(np.float32)
        else:
            actions = (
                action_scale * rng.uniform(-high, high, size=native.action_space.shape)
            ).astype(np.float32)
        step_native, step_sync = native.step(actions), sync.step(actions)
        assert_same_step(step_native, step_sync)
        obs_native = step_native[0]
        # NEXT_STEP autoreset: a sub-env that ended returns reward 0 and not done.
        assert np.all(step_native[1][done_before] == 0.0)
        assert not np.any(step_native[2][done_before] | step_native[3][done_before])
        done_before = step_native[2] | step_native[3]
        n_done += int(step_native[2].sum())
    native.close()
    sync.close()
    return n_done


def test_navigation_native_equals_sync():
    family = Navigation2DFamily(max_episode_steps=20)
    tasks = family.sample_tasks(np.random.default_rng(0), 3)
    goals = np.repeat(np.stack([t["goal"] for t in tasks]), 2, axis=0)

    def towards_goal(obs, rng):  # noisy greedy policy: reaches (terminates) some goals
        return (goals - obs) / MAX_SPEED + rng.normal(0.0, 0.02, size=obs.shape)

    n_done = run_both(family, tasks, 2, steps=50, seed=1, policy=towards_goal)
    assert n_done > 0
    run_both(
        family, tasks, 2, steps=30, seed=2, action_scale=2.0
    )  # actions beyond the box: clipped


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("family_cls", [HalfCheetahVelFamily, HalfCheetahDirFamily])
def test_half_cheetah_native_equals_sync(family_cls, num_threads):
    family = family_cls(max_episode_steps=25)  # 2 truncations + autoresets in 50 steps
    tasks = family.sample_tasks(np.random.default_rng(0), 2)
    run_both(family, tasks, 2, steps=50, seed=3, native_kwargs={"num_threads": num_threads})


@pytest.mark.parametrize("observation, model",
                         [("state", "gymnasium"), ("rllab", "gymnasium"), ("rllab", "rllab")])
@pytest.mark.parametrize("family_cls", [AntVelFamily, AntDirFamily, AntGoalFamily])
def test_ant_native_equals_sync_with_terminations(family_cls, observation, model):
    family = family_cls(max_episode_steps=40, observation=observation, model=model)
    tasks = family.sample_tasks(np.random.default_rng(0), 2)
    # Large random actions make the ant jump or flip: unhealthy -> terminated.
    n_done = run_both(family, tasks, 2, steps=60, seed=4, action_scale=3.0,
                      native_kwargs={"num_threads": 2, "observation": observation,
                                     "model": model})
    assert n_done > 0


def test_ant_contact_forces_are_those_at_the_start_of_the_last_substep():
    """Reference: by hand, all substeps but the last, then mj_forward and
    mj_rnePostConstraint at that state; the env reads what its mj_step left."""
    env = AntVelFamily().make_env()
    env.reset(seed=0)
    model, data = env.unwrapped.model, env.unwrapped.data
    rng = np.random.default_rng(0)
    contact_costs = []
    for _ in range(30):
        action = rng.uniform(-1, 1, size=8)
        replica = mujoco.MjData(model)
        mujoco.mj_copyData(replica, model, data)
        replica.ctrl[:] = action
        replica.qacc_warmstart[:] = 0.0
        mujoco.mj_step(model, replica, env.unwrapped.frame_skip - 1)
        mujoco.mj_forward(model, replica)
        mujoco.mj_rnePostConstraint(model, replica)
        *_, info = env.step(action)
        np.testing.assert_array_equal(data.cfrc_ext, replica.cfrc_ext)
        contact_costs.append(info["reward_contact"])
    env.close()
    assert min(contact_costs) < 0.0  # the ant touched the floor: the forces are not all zero


def test_ant_rllab_observation_is_rllabs_from_mujocos_data():
    """Reference: rllab's get_current_obs, read off the env's MjData by hand."""
    env = AntVelFamily(observation="rllab").make_env()
    obs, _ = env.reset(seed=0)
    data = env.unwrapped.data

    def rllab_obs():
        return np.concatenate([data.qpos, data.qvel, np.clip(data.cfrc_ext, -1, 1).ravel(),
                               data.xmat[1], data.subtree_com[1]])

    np.testing.assert_array_equal(obs, rllab_obs())
    assert obs.shape == env.observation_space.shape == (125,)
    rng = np.random.default_rng(0)
    touched = False
    for _ in range(20):
        obs, *_ = env.step(rng.uniform(-1, 1, size=8))
        np.testing.assert_array_equal(obs, rllab_obs())
        touched |= bool(np.any(obs[29:113] != 0.0))
    env.close()
    assert touched  # the contact-force block is not all zeros
    with pytest.raises(ValueError, match="observation must be one of"):
        AntVelFamily(observation="pixels")


def test_seeding_reproducible_and_seed_dependent():
    family = HalfCheetahVelFamily(max_episode_steps=10, num_threads=2)
    tasks = family.sample_tasks(np.random.default_rng(0), 2)
    actions = np.random.default_rng(1).uniform(-1, 1, size=(15, 4, 6))

    def trajectory(seed):
        env = family.make_vector_env(tasks, 2)
        obs = [env.reset(seed=seed)[0]]
        obs += [env.step(a)[0] for a in actions]  # crosses an autoreset (unseeded reset)
        env.close()
        return np.stack(obs)

    np.testing.assert_array_equal(trajectory(7), trajectory(7))
    assert not np.allclose(trajectory(7), trajectory(8))


def test_set_tasks_and_reset_mask():
    family = HalfCheetahVelFamily(max_episode_steps=10, num_threads=1)
    env = family.make_vector_env([{"velocity": 0.0}, {"velocity": 2.0}], 2)
    env.reset(seed=0)
    _, reward, *_, info = env.step(np.zeros((4, 6)))
    np.testing.assert_allclose(info["reward_forward"], -np.abs(info["x_velocity"] - [0, 0, 2, 2]))
    env.set_tasks([{"velocity": 1.0}, {"velocity": 0.5}])
    assert env.tasks[1] == {"velocity": 0.5}
    _, _, *_, info = env.step(np.zeros((4, 6)))
    np.testing.assert_allclose(
        info["reward_forward"], -np.abs(info["x_velocity"] - [1, 1, 0.5, 0.5])
    )
    with pytest.raises(ValueError, match="needs 2 tasks"):
        env.set_tasks([{"velocity": 1.0}])
    with pytest.raises(ValueError, match="velocity"):
        env.set_tasks([{"speed": 1.0}, {"velocity": 1.0}])
    # Partial reset: only masked sub-envs go back to an initial state.
    before, _ = env.reset(seed=0)
    moved = env.step(np.ones((4, 6)))[0]
    mask = np.array([True, False, False, True])
    after, _ = env.reset(options={"reset_mask": mask})
    assert np.array_equal(after[~mask], moved[~mask])
    assert np.abs(after[mask]).max() < 1.0
    env.close()


def test_held_episodes_are_not_simulated_and_the_others_run_as_with_autoreset():
    family = AntVelFamily(max_episode_steps=40, num_threads=2)
    tasks = family.sample_tasks(np.random.default_rng(0), 2)
    holding, autoreset = family.make_vector_env(tasks, 3), family.make_vector_env(tasks, 3)
    assert holding.metadata["hold_ended"]
    holding.reset(seed=5, options={"hold_ended": True})
    autoreset.reset(seed=5)
    rng = np.random.default_rng(5)
    ended = np.zeros(holding.num_envs, dtype=bool)
    flags = np.zeros((2, holding.num_envs), dtype=bool)
    last_obs = None
    for _ in range(45):  # past the horizon: every episode has ended
        actions = 3.0 * rng.uniform(-1, 1, size=holding.action_space.shape)  # flips: terminations
        qpos_before = holding.physics.qpos.copy()
        held_step, free_step = holding.step(actions), autoreset.step(actions)
        for a, b in zip(held_step[:4], free_step[:4], strict=True):  # the running ones: same
            np.testing.assert_array_equal(a[~ended], b[~ended])
        # The held ones: not simulated, last observation, reward 0, the flags they ended with.
        np.testing.assert_array_equal(holding.physics.qpos[ended], qpos_before[ended])
        if ended.any():
            np.testing.assert_array_equal(held_step[0][ended], last_obs[ended])
            assert (held_step[1][ended] == 0).all()
            np.testing.assert_array_equal(np.stack(held_step[2:4])[:, ended], flags[:, ended])
        last_obs = held_step[0]
        newly = (held_step[2] | held_step[3]) & ~ended
        flags[:, newly] = np.stack(held_step[2:4])[:, newly]
        ended |= newly
    assert ended.all() and flags[0].any() and flags[1].any()  # both kinds of ends were held
    holding.reset(seed=5)  # a plain reset: autoreset again
    holding.step(np.zeros(holding.action_space.shape))
    assert not holding._hold_ended
    holding.close()
    autoreset.close()
