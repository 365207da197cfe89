"""MuJoCo Warp physics (``physics: warp``) against C MuJoCo, where mujoco-warp is installed.

Warp computes in float32 with its own solver: the tolerances below are what it
reaches on this machine (about 10x the measured differences), not bit identity.
"""

import numpy as np
import pytest

pytest.importorskip("mujoco_warp", reason="physics 'warp' needs pip install -e '.[warp]'")

from envs.mujoco.ant import AntVelFamily  # noqa: E402
from envs.mujoco.half_cheetah import HalfCheetahDirFamily, HalfCheetahVelFamily  # noqa: E402


@pytest.mark.parametrize("family_cls", [HalfCheetahVelFamily, HalfCheetahDirFamily])
def test_warp_rollout_agrees_with_c_mujoco(family_cls):
    mujoco_family = family_cls(max_episode_steps=20)
    warp_family = family_cls(max_episode_steps=20, physics="warp")
    tasks = mujoco_family.sample_tasks(np.random.default_rng(0), 3)
    envs = [f.make_vector_env(tasks, 2) for f in (mujoco_family, warp_family)]
    first = [env.reset(seed=4)[0] for env in envs]
    np.testing.assert_allclose(first[1], first[0], atol=1e-6)  # the same initial states
    rng = np.random.default_rng(1)
    for _ in range(10):
        actions = rng.uniform(-1, 1, (6, 6))
        (obs, reward, terminated, truncated, info), warp = (env.step(actions) for env in envs)
        # Measured at step 10: observations 1e-3 apart, rewards 1e-4.
        np.testing.assert_allclose(warp[0], obs, atol=1e-2)
        np.testing.assert_allclose(warp[1], reward, atol=1e-3)
        for name in info:
            np.testing.assert_allclose(warp[4][name], info[name], atol=1e-3)
        np.testing.assert_allclose(warp[1], warp[4]["reward_forward"] + warp[4]["reward_ctrl"])
        assert (warp[2] == terminated).all() and (warp[3] == truncated).all()
    for env in envs:
        env.close()


def test_warp_is_refused_where_contact_forces_are_needed():
    with pytest.raises(ValueError, match="AntVel: physics 'warp' is not validated"):
        AntVelFamily(physics="warp")
    with pytest.raises(ValueError, match="use vectorization 'native'"):
        HalfCheetahVelFamily(physics="warp", vectorization="sync")
