"""What the MuJoCo task envs share: rules, single env, native batched env.

A family's *rules* (a ``MujocoRules`` subclass) hold all of its math as numpy
functions of batched arrays: observation, reward terms, termination, task
format. The single env (``MujocoTaskEnv``, a gymnasium ``MujocoEnv``) calls
them with a batch of 1; the native vector env (``MujocoTaskVectorEnv``) calls
them once per step for all T*E sub-envs. Same code, same numbers.
"""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco import MujocoEnv

from envs.base import Task, TaskVectorEnv, check_layout, check_task_keys
from envs.family import BuiltinTaskFamily
from envs.mujoco.physics import (
    BatchPhysics,
    asset_path,
    default_num_threads,
    load_model,
    quiet_settotalmass,
)

PHYSICS = ("mujoco", "warp")
HORIZON = 200  # the MAML paper's MuJoCo episodes; the families' and vector envs' default

def initial_state(
    rng: np.random.Generator, init_qpos: np.ndarray, init_qvel: np.ndarray, noise_scale: float
):
    """Gymnasium v5 reset noise: qpos + U(-s, s), qvel + s * N(0, 1), drawn in this order.

    ``MujocoRules.initial_state``'s default; (nq,), (nv,) -> (nq,), (nv,).
    """
    qpos = init_qpos + rng.uniform(low=-noise_scale, high=noise_scale, size=init_qpos.size)
    qvel = init_qvel + noise_scale * rng.standard_normal(init_qvel.size)
    return qpos, qvel


class MujocoRules:
    """A family's observation, reward and task format, on batches of B envs.

    Subclasses set ``name``, ``xml_file``, ``task_keys``, ``default_task``,
    ``skip_qpos`` and implement ``reward``.
    """

    name: str
    xml_file: str
    task_keys: tuple[str, ...]
    default_task: Task
    skip_qpos: int  # leading qpos entries (x, or x and y) left out of the observation
    frame_skip = 5  # physics steps per control step unless the env is given one
    needs_contact_forces = False
    observation_fields: tuple[str, ...] = ()  # MjData fields the observation reads besides
    # qpos and qvel; the envs pass them as left by the last physics step (or mj_forward at reset)

    def check_task(self, task: Task) -> None:
        check_task_keys(task, self.task_keys, self.name)

    def edit_model(self, spec: mujoco.MjSpec) -> None:
        """Changes to the Gymnasium model before it is compiled (default: none)."""

    def initial_qpos(self, model: mujoco.MjModel) -> np.ndarray:
        """(nq,) pose that reset noise is added to (default: the model's ``qpos0``)."""
        return model.qpos0.copy()

    def initial_state(self, rng, init_qpos, init_qvel, noise_scale):
        """One reset: (nq,), (nv,) -> noisy (nq,), (nv,); draws only from ``rng``."""
        return initial_state(rng, init_qpos, init_qvel, noise_scale)

    def task_arrays(self, tasks: list[Task]) -> dict[str, np.ndarray]:
        """Task dicts -> arrays (T, ...) keyed like the tasks."""
        for task in tasks:
            self.check_task(task)
        return {k: np.asarray([t[k] for t in tasks], dtype=np.float64) for k in self.task_keys}

    def observation(self, qpos: np.ndarray, qvel: np.ndarray, fields: dict) -> np.ndarray:
        """(B, nq), (B, nv), {name: (B, ...)} of ``observation_fields`` -> (B, size) float64."""
        return np.concatenate([qpos[:, self.skip_qpos :], qvel], axis=1)

    def observation_size(self, model: mujoco.MjModel) -> int:
        return model.nq - self.skip_qpos + model.nv

    def reward(self, qpos_before, qpos, qvel, cfrc_ext, action, task, dt):
        """Reward of one control step, with its terms and the termination.

        Args:
            qpos_before: (B, nq) before the step. qpos, qvel: (B, nq), (B, nv) after.
            cfrc_ext: (B, nbody, 6) contact forces after, or None.
            action: (B, nu) float64. task: arrays (B, ...). dt: control step (s).

        Returns:
            reward (B,), terminated (B,) bool, info dict of (B,) arrays.
        """
        raise NotImplementedError


class MujocoTaskEnv(MujocoEnv):
    """Single env of a ``MujocoRules`` family (Gymnasium ``MujocoEnv``).

    Args:
        task: task dict (None: the family default).
        frame_skip: physics steps per control step (None: the rules', 5 for
            Gymnasium's models, dt = 0.05 s).
        reset_noise_scale: initial-state noise scale (Gymnasium v5: 0.1).
        render_mode: Gymnasium render mode.
        **rules_kwargs: reward weights of the family (see its rules).
    """

    rules_cls: type[MujocoRules]
    metadata = {"render_modes": ["human", "rgb_array", "depth_array"]}

    def __init__(
        self,
        task: Task | None = None,
        *,
        frame_skip: int | None = None,
        reset_noise_scale: float = 0.1,
        render_mode: str | None = None,
        **rules_kwargs,
    ):
        self.rules = self.rules_cls(**rules_kwargs)
        self._reset_noise_scale = reset_noise_scale
        with quiet_settotalmass():
            MujocoEnv.__init__(
                self,
                asset_path(self.rules.xml_file),
                self.rules.frame_skip if frame_skip is None else frame_skip,
                observation_space=None,
                render_mode=render_mode,
            )
        self.metadata = {**self.metadata, "render_fps": int(np.round(1.0 / self.dt))}
        self.init_qpos = self.rules.initial_qpos(self.model)
        obs_dim = self.rules.observation_size(self.model)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float64)
        self.set_task(self.rules.default_task if task is None else task)

    def set_task(self, task: Task) -> None:
        """Run ``task`` from now on (takes effect immediately)."""
        self._task = self.rules.task_arrays([task])  # arrays (1, ...)
        self.task = task

    def _initialize_simulation(self):
        model = load_model(self.rules)
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)

    def _step_mujoco_simulation(self, ctrl, n_frames):
        # Why: a cold solver start per control step, as the batched env's; and no
        # mj_rnePostConstraint after the step: the model's sensor had mj_step fill
        # cfrc_ext (see envs.mujoco.physics).
        self.data.ctrl[:] = ctrl
        self.data.qacc_warmstart[:] = 0.0
        mujoco.mj_step(self.model, self.data, nstep=n_frames)

    def step(self, action):
        qpos_before = self.data.qpos[None].copy()
        self.do_simulation(action, self.frame_skip)
        qpos, qvel = self.data.qpos[None], self.data.qvel[None]
        cfrc = self.data.cfrc_ext[None] if self.rules.needs_contact_forces else None
        action = np.asarray(action, dtype=np.float64)[None]
        reward, terminated, info = self.rules.reward(
            qpos_before, qpos, qvel, cfrc, action, self._task, self.dt
        )
        if self.render_mode == "human":
            self.render()
        obs = self._observation()
        return (
            obs,
            float(reward[0]),
            bool(terminated[0]),
            False,
            {k: float(v[0]) for k, v in info.items()},
        )

    def reset_model(self):
        qpos, qvel = self.rules.initial_state(
            self.np_random, self.init_qpos, self.init_qvel, self._reset_noise_scale
        )
        self.set_state(qpos, qvel)  # runs mj_forward: the observation's fields are current
        return self._observation()

    def _observation(self) -> np.ndarray:
        fields = {name: getattr(self.data, name)[None] for name in self.rules.observation_fields}
        return self.rules.observation(self.data.qpos[None], self.data.qvel[None], fields)[0]


class MujocoTaskVectorEnv(TaskVectorEnv):
    """T tasks x E episodes of a ``MujocoRules`` family: one ``MjModel``, N states.

    Args:
        tasks: T task dicts (None: one default task, ``num_envs`` episodes).
        episodes_per_task: E.
        num_envs: optional check (``gymnasium.make_vec`` passes it).
        max_episode_steps: horizon (None: no time limit).
        frame_skip, reset_noise_scale: as the single env.
        num_threads: stepping threads (default: the CPUs this process may use).
        physics: ``"mujoco"`` (C MuJoCo, ``BatchPhysics``) or ``"warp"`` (MuJoCo Warp on
            a GPU when present, ``envs.mujoco.warp_physics``; float32, not bit-identical).
        **rules_kwargs: reward weights of the family.
    """

    rules_cls: type[MujocoRules]

    def __init__(
        self,
        tasks: list[Task] | None = None,
        episodes_per_task: int = 1,
        *,
        num_envs: int | None = None,
        max_episode_steps: int | None = HORIZON,
        frame_skip: int | None = None,
        reset_noise_scale: float = 0.1,
        num_threads: int | None = None,
        physics: str = "mujoco",
        **rules_kwargs,
    ):
        if physics not in PHYSICS:
            raise ValueError(f"physics must be one of {PHYSICS}, got {physics!r}")
        self.rules = self.rules_cls(**rules_kwargs)
        tasks, episodes_per_task = check_layout(
            tasks, episodes_per_task, num_envs, self.rules.default_task
        )
        self.model = load_model(self.rules)
        self.frame_skip = self.rules.frame_skip if frame_skip is None else frame_skip
        self.dt = self.model.opt.timestep * self.frame_skip
        self._reset_noise_scale = reset_noise_scale
        self._init_qpos = self.rules.initial_qpos(self.model)
        self._init_qvel = np.zeros(self.model.nv)
        low, high = self.model.actuator_ctrlrange.astype(np.float32).T
        action_space = gym.spaces.Box(low, high, dtype=np.float32)
        obs_dim = self.rules.observation_size(self.model)
        obs_space = gym.spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float64)
        self.num_threads = default_num_threads(len(tasks) * episodes_per_task, num_threads)
        super().__init__(tasks, episodes_per_task, max_episode_steps, obs_space, action_space)
        if physics == "warp":
            from envs.mujoco.warp_physics import WarpPhysics

            if self.rules.observation_fields:
                raise ValueError(f"{self.rules.name}: physics 'warp' gives no "
                                 f"{self.rules.observation_fields} for the observation")
            self.physics = WarpPhysics(self.model, self.num_envs, self.frame_skip,
                                       contact_forces=self.rules.needs_contact_forces)
        else:
            self.physics = BatchPhysics(self.model, self.num_envs, self.frame_skip,
                                        self.num_threads,
                                        contact_forces=self.rules.needs_contact_forces,
                                        fields=self.rules.observation_fields)

    def _check_task(self, task: Task) -> None:
        self.rules.check_task(task)

    def _set_task_arrays(self, tasks: list[Task]) -> None:
        self._task = {k: self.repeat_tasks(v) for k, v in self.rules.task_arrays(tasks).items()}

    def _reset_envs(self, idx: np.ndarray) -> np.ndarray:
        # A Python loop over the envs being reset: only at episode starts.
        states = [
            self.rules.initial_state(self._rngs[i], self._init_qpos, self._init_qvel,
                                     self._reset_noise_scale)
            for i in idx
        ]
        qpos = np.array([s[0] for s in states]).reshape(len(idx), -1)
        qvel = np.array([s[1] for s in states]).reshape(len(idx), -1)
        self.physics.set_state(idx, qpos, qvel)
        fields = {}
        if self.rules.observation_fields:
            self.physics.forward(idx)  # as the single env's mj_forward in set_state
            fields = {name: view[idx] for name, view in self.physics.fields.items()}
        return self.rules.observation(qpos, qvel, fields)

    def _step_envs(self, actions: np.ndarray, active: np.ndarray | None):
        physics = self.physics
        qpos_before = physics.qpos.copy()
        if active is None or len(active):
            physics.step(actions, active)
        reward, terminated, info = self.rules.reward(
            qpos_before, physics.qpos, physics.qvel, physics.cfrc_ext, actions, self._task, self.dt
        )
        obs = self.rules.observation(physics.qpos, physics.qvel, physics.fields)
        return obs, reward, terminated, info

    def close_extras(self, **kwargs) -> None:
        self.physics.close()


class MujocoTaskFamily(BuiltinTaskFamily):
    """Base of the MuJoCo families: horizon 200 (MAML paper), threads option.

    Args:
        max_episode_steps: horizon (default 200).
        vectorization: ``"native"`` | ``"sync"`` | ``"async"``.
        num_threads: threads of the native env (default: the CPUs this process may use).
        physics: the native env's engine, ``"mujoco"`` (C) or ``"warp"`` (MuJoCo Warp).
        **env_kwargs: reward weights, ``frame_skip``, ``reset_noise_scale``.
    """

    default_max_episode_steps = HORIZON

    def __init__(self, *, num_threads: int | None = None, physics: str = "mujoco", **kwargs):
        if physics not in PHYSICS:
            raise ValueError(f"physics must be one of {PHYSICS}, got {physics!r}")
        if physics == "warp" and kwargs.get("vectorization", "native") != "native":
            raise ValueError("physics 'warp' runs in the native vector env; use "
                             "vectorization 'native'")
        if physics == "warp" and self.env_cls.rules_cls.needs_contact_forces:
            raise ValueError(f"{self.name}: physics 'warp' is not validated with contact "
                             "forces (its ground contacts differ from C MuJoCo's); use "
                             "physics 'mujoco'")
        if physics == "warp":
            from envs.mujoco.warp_physics import import_warp

            import_warp()  # not installed: one line now, not when the run starts
        super().__init__(native_kwargs={"num_threads": num_threads, "physics": physics},
                         **kwargs)
