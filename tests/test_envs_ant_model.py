"""``model="rllab"``: the Ant of rllab's ant.xml (MAML's), built from Gymnasium's file."""

import mujoco
import numpy as np
import pytest

from envs.mujoco.ant import AntDir, AntDirFamily, AntDirVectorEnv

# rllab's vendor/mujoco_models/ant.xml differs from Gymnasium's ant.xml in these lines only
# (read 2026-12-06): <option timestep="0.02" integrator="RK4"/> against 0.01, and its
# default geom's solimp=".8 .8 .01" (solref ".02 1" is MuJoCo's default). Its
# mujoco_env.py starts from the file's numeric init_qpos and draws qpos + 0.01 N(0, 1),
# then qvel + 0.1 N(0, 1).
RLLAB_INIT_QPOS = [0.0, 0.0, 0.55, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0]


def test_rllab_model_differs_from_gymnasiums_only_where_rllabs_file_does():
    gym_model = AntDir().model
    env = AntDir(model="rllab")
    model = env.model
    assert model.opt.timestep == 0.02 and model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    assert env.frame_skip == 1 and env.dt == 0.02
    np.testing.assert_array_equal(model.geom_solimp[:, :3],
                                  np.tile([0.8, 0.8, 0.01], (model.ngeom, 1)))
    np.testing.assert_array_equal(model.geom_solref, gym_model.geom_solref)
    for field in ("body_mass", "body_inertia", "dof_armature", "dof_damping", "geom_friction",
                  "geom_margin", "jnt_range", "actuator_gear", "actuator_ctrlrange"):
        np.testing.assert_array_equal(getattr(model, field), getattr(gym_model, field),
                                      err_msg=field)
    env.close()


def test_rllab_reset_is_rllabs_draw_from_its_start_pose():
    env = AntDir(model="rllab")
    env.reset(seed=7)
    rng = np.random.default_rng(7)  # Gymnasium seeds np_random from the reset seed
    qpos = np.array(RLLAB_INIT_QPOS) + 0.01 * rng.standard_normal(15)
    qvel = 0.1 * rng.standard_normal(14)
    np.testing.assert_array_equal(env.data.qpos, qpos)
    np.testing.assert_array_equal(env.data.qvel, qvel)
    env.close()


def test_rllab_vector_env_steps_rllabs_model_from_its_pose():
    """(Trajectories equal the single env's: ``test_envs_equivalence``.)"""
    native = AntDirVectorEnv([{"direction": 1.0}], 4, model="rllab", num_threads=1)
    native.reset(seed=3)
    assert native.frame_skip == 1 and native.dt == 0.02 and native.model.opt.timestep == 0.02
    np.testing.assert_allclose(native.physics.qpos[:, 2], 0.55, atol=0.05)
    np.testing.assert_allclose(native.physics.qpos[:, 7:], np.tile(RLLAB_INIT_QPOS[7:], (4, 1)),
                               atol=0.05)
    native.close()


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="Ant model must be one of"):
        AntDirFamily(model="rllab2")
