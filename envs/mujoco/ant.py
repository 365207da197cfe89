"""Ant goal velocity, goal direction and goal position (MAML paper, section 5.3).

All run Gymnasium's ``ant.xml`` with frame skip 5 (dt = 0.05 s) and Gymnasium
Ant-v5's reward structure: task term + healthy reward - control cost - contact
cost, terminated when the torso height leaves [0.2, 1.0] (or the state is not
finite).

Observation (``observation="state"``, the default; 27, float64): qpos without x, y
(13) and qvel (14). Unlike Ant-v5's default we leave out the 78 clipped contact
forces (``cfrc_ext``). Why: they are mostly saturated or zero, triple the input size
of the policy and of the linear baseline, and MAML's reported runs predate MuJoCo 2
where they were computed differently. They still enter the contact cost, as computed
at the start of the control step's last substep (see ``envs.mujoco.physics``).

``observation="rllab"`` (125, float64) is rllab's AntEnv's, which MAML used: full
qpos with x, y (15), qvel (14), all bodies' ``cfrc_ext`` clipped to [-1, 1] (14 x 6),
the torso's rotation matrix ``xmat`` (9) and its subtree centre of mass (3, rllab's
``get_body_com``). ``xmat``, the centre of mass and the contact forces are MuJoCo's
from the last physics step's forward pass, as mujoco-py's ``mj_step`` left them for
rllab; at reset, from ``mj_forward``.

Velocity is the torso's xy displacement / dt, read from the free joint's qpos.
(Ant-v5 reads ``xpos`` of the torso, which lags by one physics step.)

``model="rllab"`` is the model and reset of rllab's ant.xml, which MAML's Ant envs
load (cbfinn/maml_rl): one RK4 step of 0.02 s per control step (Gymnasium's: 0.01 s,
frame skip 5, dt 0.05 s), softer contacts (every geom's solimp 0.8 0.8 0.01), the start
pose of the file's ``init_qpos`` (torso at 0.55 m, ankles bent 1 rad; Gymnasium starts
from ``qpos0``, torso at 0.75 m, joints at 0), reset noise qpos + 0.01 N(0, 1) and qvel
+ 0.1 N(0, 1) (scaled by ``reset_noise_scale`` / 0.1). The rest of the two files is the
same (bodies, joints, armature, damping, density, friction, margin, torques 150).

Differences from the rllab versions used by MAML that remain: velocity (rllab: the
torso subtree's centre-of-mass velocity after the step) and AntGoal's position (that
subtree's centre of mass; here the torso's); contact forces (rllab's MuJoCo
1.31 computed them in ``mj_forward`` after the step); weights unless set (rllab: control
0.005, contact 5e-4, survive 0.05; here the Ant-v5 defaults 0.5, 5e-4, 1.0); cold solver
start each control step.
"""

from __future__ import annotations

import numpy as np

from envs.base import Task
from envs.mujoco.base import MujocoRules, MujocoTaskEnv, MujocoTaskFamily, MujocoTaskVectorEnv
from envs.mujoco.families import DirectionFamily, VelocityFamily

OBSERVATIONS = ("state", "rllab")
MODELS = ("gymnasium", "rllab")
TORSO = 1  # body id of the torso in ant.xml (0 is the world)


class AntRules(MujocoRules):
    """Ant reward = task term + healthy - ctrl - contact; unhealthy terminates.

    Args:
        ctrl_cost_weight: weight of ``|a|^2`` (Ant-v5: 0.5).
        contact_cost_weight: weight of ``|clip(cfrc_ext, -1, 1)|^2`` (Ant-v5: 5e-4).
        healthy_reward: reward per step while healthy (Ant-v5: 1.0).
        healthy_z_range: allowed torso height (Ant-v5: (0.2, 1.0)).
        terminate_when_unhealthy: end the episode when unhealthy.
        observation: ``"state"`` (27: qpos without x, y, and qvel) or ``"rllab"`` (125:
            rllab's, with x, y, contact forces, torso orientation and centre of mass).
        model: ``"gymnasium"`` (Gymnasium's ant.xml and reset) or ``"rllab"`` (rllab's,
            as MAML: dt 0.02 s in one physics step, its contacts, start pose and reset
            noise; see the module docstring).
    """

    xml_file = "ant.xml"
    skip_qpos = 2
    needs_contact_forces = True

    def __init__(
        self,
        ctrl_cost_weight: float = 0.5,
        contact_cost_weight: float = 5e-4,
        healthy_reward: float = 1.0,
        healthy_z_range: tuple[float, float] = (0.2, 1.0),
        terminate_when_unhealthy: bool = True,
        observation: str = "state",
        model: str = "gymnasium",
    ):
        if observation not in OBSERVATIONS:
            raise ValueError(f"Ant observation must be one of {OBSERVATIONS}, got {observation!r}")
        if model not in MODELS:
            raise ValueError(f"Ant model must be one of {MODELS}, got {model!r}")
        self.model_kind = model
        if model == "rllab":
            self.frame_skip = 1
        self.ctrl_cost_weight = ctrl_cost_weight
        self.contact_cost_weight = contact_cost_weight
        self.healthy_reward = healthy_reward
        self.healthy_z_range = healthy_z_range
        self.terminate_when_unhealthy = terminate_when_unhealthy
        self.observation_kind = observation
        if observation == "rllab":
            self.observation_fields = ("cfrc_ext", "xmat", "subtree_com")

    def edit_model(self, spec):
        if self.model_kind == "rllab":
            spec.option.timestep = 0.02
            for geom in spec.geoms:
                geom.solimp[:3] = (0.8, 0.8, 0.01)

    def initial_qpos(self, model):
        if self.model_kind == "rllab":
            return model.numeric("init_qpos").data.copy()
        return super().initial_qpos(model)

    def initial_state(self, rng, init_qpos, init_qvel, noise_scale):
        if self.model_kind == "rllab":  # rllab: 0.01 and 0.1 at its fixed scale, Gymnasium's 0.1
            qpos = init_qpos + noise_scale / 10 * rng.standard_normal(init_qpos.size)
            qvel = init_qvel + noise_scale * rng.standard_normal(init_qvel.size)
            return qpos, qvel
        return super().initial_state(rng, init_qpos, init_qvel, noise_scale)

    def observation(self, qpos, qvel, fields):
        if self.observation_kind == "state":
            return super().observation(qpos, qvel, fields)
        contact = np.clip(fields["cfrc_ext"], -1.0, 1.0).reshape(len(qpos), -1)
        torso_xmat = fields["xmat"][:, TORSO].reshape(len(qpos), 9)
        torso_com = fields["subtree_com"][:, TORSO]
        return np.concatenate([qpos, qvel, contact, torso_xmat, torso_com], axis=1)

    def observation_size(self, model):
        if self.observation_kind == "state":
            return super().observation_size(model)
        return model.nq + model.nv + 6 * model.nbody + 9 + 3

    def task_reward(self, xy_position, xy_velocity, task):
        """(B, 2), (B, 2), task arrays -> (B,)."""
        raise NotImplementedError

    def reward(self, qpos_before, qpos, qvel, cfrc_ext, action, task, dt):
        xy_velocity = (qpos[:, :2] - qpos_before[:, :2]) / dt
        min_z, max_z = self.healthy_z_range
        finite = np.isfinite(qpos).all(axis=1) & np.isfinite(qvel).all(axis=1)
        healthy = finite & (qpos[:, 2] >= min_z) & (qpos[:, 2] <= max_z)
        reward_task = self.task_reward(qpos[:, :2], xy_velocity, task)
        reward_survive = self.healthy_reward * healthy
        reward_ctrl = -self.ctrl_cost_weight * np.sum(np.square(action), axis=1)
        contact = np.clip(cfrc_ext, -1.0, 1.0).reshape(len(qpos), -1)
        reward_contact = -self.contact_cost_weight * np.sum(np.square(contact), axis=1)
        info = {
            "x_velocity": xy_velocity[:, 0],
            "y_velocity": xy_velocity[:, 1],
            "reward_task": reward_task,
            "reward_survive": reward_survive,
            "reward_ctrl": reward_ctrl,
            "reward_contact": reward_contact,
        }
        reward = reward_task + reward_survive + reward_ctrl + reward_contact
        terminated = ~healthy if self.terminate_when_unhealthy else np.zeros(len(qpos), dtype=bool)
        return reward, terminated, info


class AntVelRules(AntRules):
    name = "AntVel"
    task_keys = ("velocity",)
    default_task = {"velocity": 1.5}

    def task_reward(self, xy_position, xy_velocity, task):
        return -np.abs(xy_velocity[:, 0] - task["velocity"])


class AntDirRules(AntRules):
    name = "AntDir"
    task_keys = ("direction",)
    default_task = {"direction": 1.0}

    def task_reward(self, xy_position, xy_velocity, task):
        return task["direction"] * xy_velocity[:, 0]


class AntGoalRules(AntRules):
    """Adds ``goal_offset`` (default 4.0, as MAML): keeps the reward near the start
    positive, so that falling over (which ends the episode) never pays."""

    name = "AntGoal"
    task_keys = ("goal",)
    default_task = {"goal": np.array([1.5, 1.5])}

    def __init__(self, goal_offset: float = 4.0, **kwargs):
        super().__init__(**kwargs)
        self.goal_offset = goal_offset

    def check_task(self, task: Task) -> None:
        super().check_task(task)
        if np.shape(task["goal"]) != (2,):
            raise ValueError(f"AntGoal goal must have shape (2,), got {np.shape(task['goal'])}")

    def task_reward(self, xy_position, xy_velocity, task):
        return self.goal_offset - np.sum(np.abs(xy_position - task["goal"]), axis=1)


class AntVel(MujocoTaskEnv):
    """Ant that should run forward (+x) at a goal velocity.

    | | |
    | --- | --- |
    | reward | ``-|v_x - velocity| + 1 - 0.5 |a|^2 - 5e-4 |contact|^2`` |
    | task | ``{"velocity": v}``, v ~ U[0, 3] (``AntVelFamily(low, high)``); default 1.5 |
    | termination | torso z outside [0.2, 1.0]; horizon 200 (MAML paper), ``max_episode_steps`` |
    | vs rllab (MAML) | model, observation, reward weights as arguments: see ``envs.mujoco.ant`` |

    info: reward_task, reward_survive, reward_ctrl, reward_contact, x_velocity, y_velocity.
    Args: see ``MujocoTaskEnv`` and ``AntRules``.
    """

    rules_cls = AntVelRules


class AntDir(MujocoTaskEnv):
    """Ant that should run forward (+1) or backward (-1) along x.

    | | |
    | --- | --- |
    | reward | ``direction * v_x + 1 - 0.5 |a|^2 - 5e-4 |contact|^2`` |
    | task | ``{"direction": d}``, d = +1 or -1 with probability 1/2; default +1 |
    | termination | torso z outside [0.2, 1.0]; horizon 200 (MAML paper), ``max_episode_steps`` |
    | vs rllab (MAML) | model, observation, reward weights as arguments: see ``envs.mujoco.ant`` |

    info: as ``AntVel``. Args: see ``MujocoTaskEnv`` and ``AntRules``.
    """

    rules_cls = AntDirRules


class AntGoal(MujocoTaskEnv):
    """Ant that should walk to a goal position in the plane.

    | | |
    | --- | --- |
    | reward | ``4 - |xy - goal|_1 + 1 - 0.5 |a|^2 - 5e-4 |contact|^2`` (L1 and offset 4 as MAML) |
    | task | ``{"goal": (2,) array}``, area-uniform in the disc of radius 3; default (1.5, 1.5) |
    | termination | torso z outside [0.2, 1.0]; horizon 200 (MAML paper), ``max_episode_steps`` |
    | vs rllab (MAML) | goals in the square [-3, 3]^2 (``AntGoalFamily(region="square")``), distance
      from the torso subtree's centre of mass; rest: see ``envs.mujoco.ant`` |

    info: as ``AntVel``. Args: see ``MujocoTaskEnv``, ``AntRules``, ``AntGoalRules``.
    """

    rules_cls = AntGoalRules


class AntVelVectorEnv(MujocoTaskVectorEnv):
    """Native batched ``AntVel``; arguments as ``MujocoTaskVectorEnv``."""

    rules_cls = AntVelRules


class AntDirVectorEnv(MujocoTaskVectorEnv):
    """Native batched ``AntDir``; arguments as ``MujocoTaskVectorEnv``."""

    rules_cls = AntDirRules


class AntGoalVectorEnv(MujocoTaskVectorEnv):
    """Native batched ``AntGoal``; arguments as ``MujocoTaskVectorEnv``."""

    rules_cls = AntGoalRules


class AntVelFamily(VelocityFamily):
    """Goal velocities uniform in ``[low, high]`` (default [0, 3]); see ``VelocityFamily``."""

    name = "AntVel"
    env_cls = AntVel
    vector_env_cls = AntVelVectorEnv
    default_high = 3.0


class AntDirFamily(DirectionFamily):
    """Directions +1 / -1 with probability 1/2; see ``DirectionFamily``."""

    name = "AntDir"
    env_cls = AntDir
    vector_env_cls = AntDirVectorEnv


GOAL_REGIONS = ("disc", "square")


class AntGoalFamily(MujocoTaskFamily):
    """Goals area-uniform in the disc of ``radius`` (default 3), or with ``region="square"``
    uniform in the square [-radius, radius]^2 (rllab's AntEnvRandGoal, which MAML used);
    see ``MujocoTaskFamily``."""

    name = "AntGoal"
    env_cls = AntGoal
    vector_env_cls = AntGoalVectorEnv

    def __init__(self, radius: float = 3.0, region: str = "disc", **kwargs):
        if not (np.isfinite(radius) and radius > 0):
            raise ValueError(f"AntGoal radius must be a positive number, got {radius}")
        if region not in GOAL_REGIONS:
            raise ValueError(f"AntGoal region must be one of {GOAL_REGIONS}, got {region!r}")
        super().__init__(**kwargs)
        self.radius = float(radius)
        self.region = region

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        if self.region == "square":
            goals = rng.uniform(-self.radius, self.radius, size=(n, 2))
            return [{"goal": goal} for goal in goals]
        # sqrt of a uniform radius fraction: uniform per unit area, not per unit radius.
        r = self.radius * np.sqrt(rng.uniform(size=n))
        angle = rng.uniform(0.0, 2 * np.pi, size=n)
        goals = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
        return [{"goal": goal} for goal in goals]
