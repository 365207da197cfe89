"""What metarl changes in Meta-World 3.1.1 when it imports it: one fix for mujoco 4,
and two replacements for speed that give Meta-World's own results bit for bit (tested
against Meta-World's functions, which ``MetaWorldOwn`` puts back for tests and benchmarks).

- ``reset_mocap_welds``: mujoco 4 widened a weld's ``eq_data`` from 11 to 12 numbers
  (a new last field, 0 by default); Meta-World writes 11.
- ``touching_object``: Meta-World loops over ``data.contact`` in Python, an object per
  contact per step (28% of push-v3's step); here on the contact arrays.
- ``_get_curr_obs_combined_no_goal``: the observation without np.split / np.hstack
  (10% of a step over ML10's classes).

Not replaced: scipy's ``Rotation.from_matrix`` in 22 task modules (13% of a step; its
compiled routine, called directly, saved only a tenth of that) and the reward terms'
``tolerance`` (7%; numpy's and math's exp may differ in the last bit).
"""

from __future__ import annotations

import mujoco
import numpy as np


def reset_mocap_welds(self) -> None:
    """Meta-World's weld reset, writing its 11 numbers into eq_data of any width."""
    if self.model.nmocap > 0 and self.model.eq_data is not None:
        weld = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 5.0]
        for i in range(self.model.eq_data.shape[0]):
            if self.model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD:
                self.model.eq_data[i, : len(weld)] = weld


def touching_object(self, object_geom_id: int) -> bool:
    """Whether both gripper pads push on the object: the normal forces of the contacts
    between each pad and the object sum to more than 0 (summed in contact order by
    Python's ``sum``, as Meta-World does)."""
    contact = self.data.contact
    geoms = contact.geom  # (ncon, 2)
    with_object = (geoms == object_geom_id).any(axis=1)

    def pad_force(pad_name: str) -> float:
        pad = self.data.geom(pad_name).id
        rows = contact.efc_address[with_object & (geoms == pad).any(axis=1)]
        return sum(self.data.efc_force[rows].tolist())

    return 0 < pad_force("leftpad_geom") and 0 < pad_force("rightpad_geom")


def curr_obs_combined_no_goal(self) -> np.ndarray:
    """(18,) float64: hand position, gripper opening (0..1), then each object's position
    and quaternion, zero-padded to ``_obs_obj_max_len``: Meta-World's values, copied
    into one array instead of split and stacked."""
    obj_pos, obj_quat = self._get_pos_objects(), self._get_quat_objects()
    count = len(obj_pos) // 3
    assert len(obj_pos) == 3 * count and len(obj_quat) == 4 * count
    obs = np.zeros(4 + self._obs_obj_max_len)
    obs[:3] = self.get_endeff_pos()
    apart = np.linalg.norm(self.data.body("rightclaw").xpos - self.data.body("leftclaw").xpos)
    obs[3] = np.clip(apart / 0.1, 0.0, 1.0)  # the fingers open about 0.1 m at most
    objects = obs[4:4 + 7 * count].reshape(count, 7)
    objects[:, :3] = np.reshape(obj_pos, (count, 3))
    objects[:, 3:] = np.reshape(obj_quat, (count, 4))
    return obs


class MetaWorldOwn:
    """Meta-World's own functions in place of the speed replacements while inside
    (``with MetaWorldOwn(): ...``): the reference for tests and benchmarks."""

    def __enter__(self):
        _set(_ORIGINALS)
        return self

    def __exit__(self, *exc):
        _set(REPLACEMENTS)


REPLACEMENTS = {"touching_object": touching_object,
                "_get_curr_obs_combined_no_goal": curr_obs_combined_no_goal}
_ORIGINALS: dict = {}


def _set(methods: dict) -> None:
    from metaworld.sawyer_xyz_env import SawyerXYZEnv

    for name, method in methods.items():
        setattr(SawyerXYZEnv, name, method)


def apply() -> None:
    """Patch the imported Meta-World once (later calls change nothing)."""
    from metaworld.sawyer_xyz_env import SawyerMocapBase, SawyerXYZEnv

    SawyerMocapBase.reset_mocap_welds = reset_mocap_welds
    if not _ORIGINALS:
        _ORIGINALS.update({name: getattr(SawyerXYZEnv, name) for name in REPLACEMENTS})
        _set(REPLACEMENTS)
