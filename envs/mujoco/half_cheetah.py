"""HalfCheetah goal velocity and goal direction (MAML paper, section 5.3).

Both run Gymnasium's ``half_cheetah.xml`` with frame skip 5 (dt = 0.05 s).
Forward velocity is ``(x_after - x_before) / dt`` of the root x joint.
Observation (17, float64): qpos without x (8), qvel (9), as Gymnasium v5.
"""

from __future__ import annotations

import numpy as np

from envs.mujoco.base import MujocoRules, MujocoTaskEnv, MujocoTaskVectorEnv
from envs.mujoco.families import DirectionFamily, VelocityFamily


class HalfCheetahRules(MujocoRules):
    """Cheetah reward = forward term (task specific) - ctrl_cost_weight * |a|^2.

    Args:
        ctrl_cost_weight: weight of the control cost (MAML: 0.05).
    """

    xml_file = "half_cheetah.xml"
    skip_qpos = 1

    def __init__(self, ctrl_cost_weight: float = 0.05):
        self.ctrl_cost_weight = ctrl_cost_weight

    def forward_reward(self, x_velocity: np.ndarray, task: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def reward(self, qpos_before, qpos, qvel, cfrc_ext, action, task, dt):
        x_velocity = (qpos[:, 0] - qpos_before[:, 0]) / dt
        reward_forward = self.forward_reward(x_velocity, task)
        reward_ctrl = -self.ctrl_cost_weight * np.sum(np.square(action), axis=1)
        info = {
            "x_velocity": x_velocity,
            "reward_forward": reward_forward,
            "reward_ctrl": reward_ctrl,
        }
        return reward_forward + reward_ctrl, np.zeros(len(qpos), dtype=bool), info


class HalfCheetahVelRules(HalfCheetahRules):
    name = "HalfCheetahVel"
    task_keys = ("velocity",)
    default_task = {"velocity": 1.0}

    def forward_reward(self, x_velocity, task):
        return -np.abs(x_velocity - task["velocity"])


class HalfCheetahDirRules(HalfCheetahRules):
    name = "HalfCheetahDir"
    task_keys = ("direction",)
    default_task = {"direction": 1.0}

    def forward_reward(self, x_velocity, task):
        return task["direction"] * x_velocity


class HalfCheetahVel(MujocoTaskEnv):
    """HalfCheetah that should run at a goal velocity.

    | | |
    | --- | --- |
    | reward | ``-|v_x - velocity| - 0.05 |a|^2`` (info: reward_forward, reward_ctrl) |
    | task | ``{"velocity": v}``, v ~ U[0, 2] (``HalfCheetahVelFamily(low, high)``); default 1.0 |
    | termination | none; horizon 200 (MAML paper), ``max_episode_steps`` |
    | obs vs rllab (MAML) | 17 dims; rllab added the torso centre of mass (20) |
    | velocity vs rllab | root x displacement / dt; rllab: torso com velocity |
    | initial state vs rllab | qpos + U(-0.1, 0.1), qvel + 0.1 N(0, 1); rllab: qpos + 0.01 N(0, 1) |
    | control cost vs rllab | on the raw action; rllab: on the action clipped to [-1, 1] |
    | solver | cold start each control step (as ``mujoco.rollout``) |

    Args: see ``MujocoTaskEnv`` (``ctrl_cost_weight`` default 0.05).
    """

    rules_cls = HalfCheetahVelRules


class HalfCheetahDir(MujocoTaskEnv):
    """HalfCheetah that should run forward (+1) or backward (-1).

    | | |
    | --- | --- |
    | reward | ``direction * v_x - 0.05 |a|^2`` (info: reward_forward, reward_ctrl, x_velocity) |
    | task | ``{"direction": d}``, d = +1 or -1 with probability 1/2; default +1 |
    | termination | none; horizon 200 (MAML paper), ``max_episode_steps`` |
    | vs rllab (MAML) | as ``HalfCheetahVel`` |

    Args: see ``MujocoTaskEnv`` (``ctrl_cost_weight`` default 0.05).
    """

    rules_cls = HalfCheetahDirRules


class HalfCheetahVelVectorEnv(MujocoTaskVectorEnv):
    """Native batched ``HalfCheetahVel``; arguments as ``MujocoTaskVectorEnv``."""

    rules_cls = HalfCheetahVelRules


class HalfCheetahDirVectorEnv(MujocoTaskVectorEnv):
    """Native batched ``HalfCheetahDir``; arguments as ``MujocoTaskVectorEnv``."""

    rules_cls = HalfCheetahDirRules


class HalfCheetahVelFamily(VelocityFamily):
    """Goal velocities uniform in ``[low, high]`` (default [0, 2]); see ``VelocityFamily``."""

    name = "HalfCheetahVel"
    env_cls = HalfCheetahVel
    vector_env_cls = HalfCheetahVelVectorEnv
    default_high = 2.0


class HalfCheetahDirFamily(DirectionFamily):
    """Directions +1 / -1 with probability 1/2; see ``DirectionFamily``."""

    name = "HalfCheetahDir"
    env_cls = HalfCheetahDir
    vector_env_cls = HalfCheetahDirVectorEnv
