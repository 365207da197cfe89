"""Stepping N copies of one MuJoCo model on MuJoCo Warp (``physics: warp``).

``WarpPhysics`` has ``BatchPhysics``'s interface (``envs.mujoco.physics``): the native
vector env steps either. The N states live in one ``mujoco_warp`` ``Data`` with N
worlds on a Warp device: a CUDA GPU when present (each control step's ``frame_skip``
physics steps captured once as a CUDA graph and replayed), else the CPU (correct,
but far slower than C MuJoCo: 8 HalfCheetahs step about 160 control steps/s here, so
use it to check, not to train).

What differs from C MuJoCo: Warp computes in float32 and its constraint solver is
its own, so trajectories agree with ``BatchPhysics`` to about 1e-6 at first and
drift apart as contacts amplify differences (``tests/test_warp_physics.py`` states
the tolerance over a rollout). The solver starts cold every control step, as
``BatchPhysics`` does. Every world is stepped each call, also the held ones (the
vector env discards their outputs).

Ant is refused: Warp can fill its contact forces (the same sensor trick as on C
MuJoCo), but its ground contacts differ. Measured here (random actions, 6 Ants): states
agree to 1e-7 until the first ground contact at the second control step, where
velocities land 0.7 apart, and trajectories separate within a few steps. Until that is
understood, Ant results would not be comparable.

Install: ``pip install -e ".[warp]"`` (mujoco-warp; warp-lang is about 400 MB). The
first step compiles Warp's kernels (about 40 s on this machine; cached after).
"""

from __future__ import annotations

import mujoco
import numpy as np


def import_warp():
    try:
        import mujoco_warp
        import warp
    except ImportError:
        raise ImportError("physics 'warp' needs MuJoCo Warp: pip install -e \".[warp]\" "
                          "(or pip install mujoco-warp)") from None
    return warp, mujoco_warp


class WarpPhysics:
    """N simulations of ``model`` on MuJoCo Warp.

    Args:
        model: the shared ``MjModel``.
        num_envs: N (Warp's worlds).
        frame_skip: physics steps per control step.
        device: Warp device, e.g. ``"cuda:0"`` or ``"cpu"`` (None: Warp's preferred,
            a GPU when present).
        contact_forces: must be False (Ant is refused; see the module docstring).

    Attributes ``qpos`` (N, nq) and ``qvel`` (N, nv): the state after the last step,
    as float64 numpy copies of Warp's float32 arrays.
    """

    def __init__(self, model: mujoco.MjModel, num_envs: int, frame_skip: int,
                 device: str | None = None, contact_forces: bool = False):
        if contact_forces:
            raise ValueError("physics 'warp' is not validated with contact forces (Ant: its "
                             "ground contacts differ from C MuJoCo's); use physics 'mujoco'")
        wp, mjw = import_warp()
        self._wp, self._mjw = wp, mjw
        self.device = wp.get_device(device)
        self.cfrc_ext = None
        self.fields = {}  # no MjData fields beyond qpos and qvel for the observation
        self._frame_skip = frame_skip
        with wp.ScopedDevice(self.device):
            self._model = mjw.put_model(model)
            self._data = mjw.put_data(model, mujoco.MjData(model), nworld=num_envs)
        self._graph = None

    @property
    def qpos(self) -> np.ndarray:
        return self._data.qpos.numpy().astype(np.float64)  # waits for the device

    @property
    def qvel(self) -> np.ndarray:
        return self._data.qvel.numpy().astype(np.float64)

    def set_state(self, idx: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Envs ``idx`` restart at time 0 from ``qpos`` (len(idx), nq), ``qvel`` (len(idx), nv)."""
        reset = np.zeros(self._data.nworld, dtype=bool)
        reset[idx] = True
        self._mjw.reset_data(self._model, self._data,
                             reset=self._wp.array(reset, dtype=bool, device=self.device))
        for name, rows in (("qpos", qpos), ("qvel", qvel)):  # at episode starts only
            state = getattr(self._data, name).numpy().copy()
            state[idx] = rows
            getattr(self._data, name).assign(state)

    def _physics_steps(self) -> None:
        self._data.qacc_warmstart.zero_()
        for _ in range(self._frame_skip):
            self._mjw.step(self._model, self._data)

    def step(self, ctrl: np.ndarray, idx: np.ndarray | None = None) -> None:
        """Apply ``ctrl`` (N, nu) for ``frame_skip`` physics steps to every env (``idx``
        is ignored: all worlds step together, and held envs' outputs are discarded)."""
        self._data.ctrl.assign(np.asarray(ctrl, dtype=np.float32))
        if not self.device.is_cuda:
            self._physics_steps()
        elif self._graph is None:  # the first call compiles and runs, then is recorded
            self._physics_steps()
            with self._wp.ScopedCapture(device=self.device) as capture:
                self._physics_steps()
            self._graph = capture.graph
        else:
            self._wp.capture_launch(self._graph)

    def close(self) -> None:
        self._graph = self._model = self._data = None
