"""A user's gymnasium Env with set_task, wrapped as a task family."""

import gymnasium as gym
import numpy as np
import pytest

from envs import EnvTaskFamily, TaskFamily, TaskVectorWrapper, get_family


class TargetEnv(gym.Env):
    """Toy task env: obs = [task target, noisy counter]; reward = -|action - target|."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.target = 0.0
        self._count = 0.0

    def set_task(self, task):
        self.target = float(task["target"])

    def _obs(self):
        return np.array([self.target, self._count])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._count = float(self.np_random.uniform())  # seeded randomness
        return self._obs(), {}

    def step(self, action):
        self._count += 1.0
        reward = -abs(float(action[0]) - self.target)
        return self._obs(), reward, False, False, {"reward_target": reward}


def sample_targets(rng, n):
    return [{"target": float(x)} for x in rng.uniform(-1.0, 1.0, size=n)]


def make_family(**kwargs):
    return EnvTaskFamily(TargetEnv, sample_targets, name="Target", max_episode_steps=3, **kwargs)


def test_family_protocol_and_single_env():
    family = make_family()
    assert isinstance(family, TaskFamily) and family.name == "Target"
    env = family.make_env({"target": 0.5})
    obs, _ = env.reset(seed=0)
    assert obs[0] == 0.5
    for _ in range(2):
        assert not env.step(np.zeros(1, dtype=np.float32))[3]
    assert env.step(np.zeros(1, dtype=np.float32))[3]  # time limit 3


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_task_major_layout_seeding_and_set_tasks(vectorization):
    family = make_family(vectorization=vectorization)
    tasks = [{"target": -0.5}, {"target": 0.25}, {"target": 0.75}]
    env = family.make_vector_env(tasks, episodes_per_task=2)
    assert isinstance(env, TaskVectorWrapper)
    assert (env.num_envs, env.num_tasks, env.episodes_per_task, env.max_episode_steps) == (
        6,
        3,
        2,
        3,
    )
    obs, _ = env.reset(seed=10)
    np.testing.assert_array_equal(obs[:, 0], [-0.5, -0.5, 0.25, 0.25, 0.75, 0.75])
    # Sub-env i is seeded with 10 + i, exactly as a single env reset(seed=10 + i).
    single = [family.make_env(tasks[0]).reset(seed=10 + i)[0][1] for i in range(6)]
    np.testing.assert_allclose(obs[:, 1], single)
    assert len(set(obs[:, 1])) == 6
    env.set_tasks([{"target": 1.0}, {"target": 0.0}, {"target": -1.0}])
    obs, reward, terminated, truncated, info = env.step(np.zeros((6, 1), dtype=np.float32))
    np.testing.assert_array_equal(obs[:, 0], [1, 1, 0, 0, -1, -1])
    np.testing.assert_allclose(info["reward_target"], [-1, -1, 0, 0, -1, -1])
    with pytest.raises(ValueError, match="needs 3 tasks"):
        env.set_tasks(tasks[:2])
    for _ in range(2):
        *_, truncated, _ = env.step(np.zeros((6, 1), dtype=np.float32))
    assert truncated.all()
    env.close()


def test_adapter_errors():
    with pytest.raises(ValueError, match="vectorization must be one of"):
        make_family(vectorization="native")
    with pytest.raises(TypeError, match="needs a set_task"):
        EnvTaskFamily(lambda: gym.make("CartPole-v1"), sample_targets).make_env()
    bad = EnvTaskFamily(TargetEnv, lambda rng, n: [0.5] * n)
    with pytest.raises(ValueError, match="must return 2 dicts"):
        bad.sample_tasks(np.random.default_rng(0), 2)


USER_MODULE = """
import gymnasium as gym
import numpy as np
from envs import EnvTaskFamily

class Bandit(gym.Env):
    observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,))
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,))

    def set_task(self, task):
        self.arm = task["arm"]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(1, dtype=np.float32), -abs(float(action[0]) - self.arm), False, False, {}

def family(horizon=5):
    sample = lambda rng, n: [{"arm": float(a)} for a in rng.uniform(-1, 1, n)]
    return EnvTaskFamily(Bandit, sample, name="Bandit", max_episode_steps=horizon)
"""


def test_get_family_loads_user_family(tmp_path, monkeypatch):
    (tmp_path / "user_bandit_tasks.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    family = get_family("user_bandit_tasks:family", horizon=7)
    assert family.name == "Bandit" and family.max_episode_steps == 7
    env = family.make_vector_env(family.sample_tasks(np.random.default_rng(0), 2), 2)
    assert env.reset(seed=0)[0].shape == (4, 1)
    assert env.step(np.zeros((4, 1)))[1].shape == (4,)


class GoesBadEnv(TargetEnv):
    """Gives a NaN reward from its 5th reset on (the third meta-iteration)."""

    def reset(self, *, seed=None, options=None):
        self.resets = getattr(self, "resets", 0) + 1
        return super().reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, *rest = super().step(action)
        return obs, float("nan") if self.resets >= 5 else reward, *rest


class WrongShapeEnv(TargetEnv):
    def _obs(self):
        return np.array([self.target, self._count, 0.0])  # the space says (2,)


def small_rl_config(*extra):
    from metarl.config import load_config
    return load_config(data={"kind": "rl"}, overrides=[
        "meta_batch_size=2", "episodes_per_task=2", "horizon=3", "hidden_sizes=[4]",
        "checkpoint_every=1", "iterations=10", *extra])


def test_a_non_finite_reward_is_one_line_naming_env_quantity_and_iteration(tmp_path):
    from metarl.checkpoint import load_checkpoint
    from metarl.rl.sampler import EnvOutputError
    from metarl.rl.train import train
    family = EnvTaskFamily(GoesBadEnv, sample_targets, name="GoesBad", max_episode_steps=3)
    with pytest.raises(EnvOutputError) as err:
        train(small_rl_config(), family, tmp_path, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("iteration 3: GoesBadEnv produced a non-finite reward (task 0")
    assert "last checkpoint stays" in message
    assert load_checkpoint(tmp_path / "checkpoint.pt")["iteration"] == 2


def test_observations_of_another_shape_than_the_space_are_named(tmp_path):
    from metarl.rl.sampler import EnvOutputError
    from metarl.rl.train import train
    family = EnvTaskFamily(WrongShapeEnv, sample_targets, name="Wrong", max_episode_steps=3)
    with pytest.raises(EnvOutputError, match=r"WrongShapeEnv: reset returned observations of "
                                             r"shape \(3,\), its observation_space says \(2,\)"):
        train(small_rl_config(), family, tmp_path, progress=False)


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_a_users_family_meets_the_contract_rl_is_typed_against(vectorization):
    from metarl.rl.episodes import TaskEnv
    env = make_family(vectorization=vectorization).make_vector_env(
        sample_targets(np.random.default_rng(0), 2), 2)
    assert isinstance(env, TaskEnv)
    env.close()
