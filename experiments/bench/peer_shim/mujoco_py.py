"""The part of mujoco-py that gym 0.17's ``MujocoEnv`` uses, on the ``mujoco`` bindings.

Only for ``against_pytorch_maml_rl.py``: pytorch-maml-rl's MuJoCo envs subclass gym
0.17's, which import mujoco-py (MuJoCo 2.1 binaries and a compiled extension, not
installable here). With this module first on the peer's ``PYTHONPATH`` they step C
MuJoCo through the official bindings instead, one ``mj_step`` call per frame as
mujoco-py's ``MjSim.step`` does. Rendering is not provided.
"""

from __future__ import annotations

import re
from collections import namedtuple

import mujoco

MjSimState = namedtuple("MjSimState", "time qpos qvel act udd_state")


def load_model_from_path(path: str) -> mujoco.MjModel:
    # MuJoCo 2.3.3 removed <compiler coordinate>; gym 0.17's models only say "local",
    # which is what MuJoCo now always does.
    with open(path) as f:
        xml = re.sub(r'\scoordinate="local"', "", f.read())
    return mujoco.MjModel.from_xml_string(xml)


class _Data:
    """MjData with mujoco-py's accessors."""

    def __init__(self, data: mujoco.MjData):
        self._data = data

    def __getattr__(self, name):
        return getattr(self._data, name)

    def get_body_xpos(self, name: str):
        return self._data.body(name).xpos


class MjSim:
    def __init__(self, model: mujoco.MjModel):
        self.model = model
        self._raw = mujoco.MjData(model)
        self.data = _Data(self._raw)

    def step(self) -> None:
        mujoco.mj_step(self.model, self._raw)

    def forward(self) -> None:
        mujoco.mj_forward(self.model, self._raw)

    def reset(self) -> None:
        mujoco.mj_resetData(self.model, self._raw)

    def get_state(self) -> MjSimState:
        d = self._raw
        return MjSimState(d.time, d.qpos.copy(), d.qvel.copy(), d.act.copy(), {})

    def set_state(self, state: MjSimState) -> None:
        d = self._raw
        d.time = state.time
        d.qpos[:], d.qvel[:] = state.qpos, state.qvel
        if state.act is not None and d.act.size:
            d.act[:] = state.act
