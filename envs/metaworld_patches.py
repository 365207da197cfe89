"""What metarl changes in Meta-World 3.1.1 when it imports it: one fix for mujoco 4,
and four replacements for speed that give Meta-World's own results bit for bit (tested
against Meta-World's functions, which ``MetaWorldOwn`` puts back for tests and benchmarks).

- ``reset_mocap_welds``: mujoco 4 widened a weld's ``eq_data`` from 11 to 12 numbers
  (a new last field, 0 by default); Meta-World writes 11.
- ``touching_object``: Meta-World loops over ``data.contact`` in Python, an object per
  contact per step (28% of push-v3's step); here on the contact arrays.
- ``_get_curr_obs_combined_no_goal``: the observation without np.split / np.hstack
  (10% of a step over ML10's classes).
- ``Rotation`` in 22 task modules, whose one use is ``from_matrix(m).as_quat()`` for an
  object's quaternion: scipy's arithmetic in Python floats (13% of a step; calling
  scipy's compiled routine directly saved only a tenth of it, its checks being numpy).
- ``reward_utils.tolerance`` for a scalar: the reward terms' bounds and distance without
  numpy's array dispatch, the sigmoid still numpy's (math's exp may differ in the last bit).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import pkgutil
import re

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


def matrix_quaternion(matrix) -> np.ndarray:
    """(x, y, z, w) of a rotation matrix (3, 3): ``Rotation.from_matrix(matrix).as_quat()``
    bit for bit, in Python floats instead of through scipy's array wrapping (~100 us).

    scipy (1.17) checks the determinant and that the Gramian is the identity (isclose,
    atol 1e-12), orthogonalises by SVD where it is not, then applies Markley's method:
    the largest of the diagonal and the trace picks the formula, and the quaternion is
    divided by its norm. The same arithmetic in the same order here; a matrix that is
    not orthonormal well inside scipy's tolerance goes to scipy itself, so the branch
    taken is always scipy's (MuJoCo's frames are orthonormal to about 1e-16).
    """
    m = np.asarray(matrix, dtype=np.float64).reshape(3, 3).tolist()
    (a, b, c), (d, e, f), (g, h, k) = m
    det = a * (e * k - f * h) - b * (d * k - f * g) + c * (d * h - e * g)
    off = max(abs(a * d + b * e + c * f), abs(a * g + b * h + c * k), abs(d * g + e * h + f * k))
    diag = max(abs(a * a + b * b + c * c - 1), abs(d * d + e * e + f * f - 1),
               abs(g * g + h * h + k * k - 1))
    if not (det > 0.5 and off < 1e-13 and diag < 1e-7):
        from scipy.spatial.transform import Rotation

        return Rotation.from_matrix(matrix).as_quat()
    decision = [a, e, k, a + e + k]
    choice = 0
    for index in (1, 2, 3):  # the first largest, as scipy's argmax
        if decision[index] > decision[choice]:
            choice = index
    q = [0.0, 0.0, 0.0, 0.0]
    if choice != 3:
        i, j, l_ = choice, (choice + 1) % 3, (choice + 2) % 3
        q[i] = 1 - decision[3] + 2 * m[i][i]
        q[j] = m[j][i] + m[i][j]
        q[l_] = m[l_][i] + m[i][l_]
        q[3] = m[l_][j] - m[j][l_]
    else:
        q = [m[2][1] - m[1][2], m[0][2] - m[2][0], m[1][0] - m[0][1], 1 + decision[3]]
    norm = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    return np.array([q[0] / norm, q[1] / norm, q[2] / norm, q[3] / norm])


class MatrixQuaternion:
    """Stands in for scipy's ``Rotation`` in Meta-World's task modules, whose every use
    of it is ``Rotation.from_matrix(m).as_quat()`` (``quaternion_modules`` checks)."""

    def __init__(self, quat: np.ndarray):
        self._quat = quat

    @staticmethod
    def from_matrix(matrix) -> MatrixQuaternion:
        return MatrixQuaternion(matrix_quaternion(matrix))

    def as_quat(self) -> np.ndarray:
        return self._quat


@functools.cache
def quaternion_modules() -> tuple:
    """Meta-World's task modules that import scipy's Rotation and use it only as
    ``Rotation.from_matrix(...).as_quat()`` (22 in 3.1.1; any other use: left alone)."""
    import metaworld.envs
    from scipy.spatial.transform import Rotation

    modules = []
    for info in pkgutil.iter_modules(metaworld.envs.__path__, "metaworld.envs."):
        module = importlib.import_module(info.name)
        if getattr(module, "Rotation", None) is not Rotation:
            continue
        code = re.sub(r"\s+", "", inspect.getsource(module))
        uses = re.findall(r"Rotation\.from_matrix\((?:[^()]|\([^()]*\))*\)\.as_quat\(\)", code)
        if code.count("Rotation.") == len(uses):
            modules.append(module)
    return tuple(modules)


def tolerance(x, bounds=(0.0, 0.0), margin=0.0, sigmoid="gaussian", value_at_margin=0.1):
    """Meta-World's ``reward_utils.tolerance`` (1 inside ``bounds``, a sigmoid of the
    distance / ``margin`` outside), its numpy dispatch skipped for a scalar ``x``: the
    distance in the same float arithmetic, the sigmoid by Meta-World's own ``_sigmoids``
    (numpy's exp), so the same bits. Arrays go to Meta-World's own."""
    from metaworld.utils import reward_utils

    if not np.isscalar(x):
        own = _ORIGINALS[(reward_utils, "tolerance")]
        return own(x, bounds, margin, sigmoid, value_at_margin)

    lower, upper = bounds
    if lower > upper:
        raise ValueError("Lower bound must be <= upper bound.")
    if margin < 0:
        raise ValueError(f"`margin` must be non-negative. Current value: {margin}")
    if lower <= x <= upper:
        return 1.0
    if margin == 0:
        return 0.0
    distance = np.float64(lower - x if x < lower else x - upper) / margin
    return float(reward_utils._sigmoids(distance, value_at_margin, sigmoid))


def _replacements() -> list[tuple[object, str, object]]:
    """(owner, attribute, metarl's replacement) for every speed replacement."""
    from metaworld.sawyer_xyz_env import SawyerXYZEnv
    from metaworld.utils import reward_utils

    return [(SawyerXYZEnv, "touching_object", touching_object),
            (SawyerXYZEnv, "_get_curr_obs_combined_no_goal", curr_obs_combined_no_goal),
            (reward_utils, "tolerance", tolerance),
            *[(module, "Rotation", MatrixQuaternion) for module in quaternion_modules()]]


_ORIGINALS: dict[tuple[object, str], object] = {}  # Meta-World's own, once ``apply`` ran


def _set(own: bool) -> None:
    for owner, name, replacement in _replacements():
        setattr(owner, name, _ORIGINALS[(owner, name)] if own else replacement)


class MetaWorldOwn:
    """Meta-World's own functions in place of the speed replacements while inside
    (``with MetaWorldOwn(): ...``): the reference for tests and benchmarks."""

    def __enter__(self):
        _set(own=True)
        return self

    def __exit__(self, *exc):
        _set(own=False)


def apply() -> None:
    """Patch the imported Meta-World once (later calls change nothing)."""
    from metaworld.sawyer_xyz_env import SawyerMocapBase

    SawyerMocapBase.reset_mocap_welds = reset_mocap_welds
    if not _ORIGINALS:
        _ORIGINALS.update({(owner, name): getattr(owner, name)
                           for owner, name, _ in _replacements()})
        _set(own=False)
