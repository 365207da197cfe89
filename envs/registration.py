"""Gymnasium ids for the built-in families, and family lookup by name.

``register()`` adds ``metarl/<Name>-v0`` ids (single env ``entry_point`` and
native ``vector_entry_point``), so that::

    envs.register()
    env = gymnasium.make("metarl/HalfCheetahVel-v0")
    venv = gymnasium.make_vec("metarl/HalfCheetahVel-v0", num_envs=8,
                              vectorization_mode="vector_entry_point")

Importing ``envs`` registers nothing; nothing here imports MuJoCo until a
MuJoCo family is built.
"""

from __future__ import annotations

import difflib
import importlib
import re

import gymnasium as gym

from envs.base import TaskFamily

NAMESPACE = "metarl"

# name -> (module, single env class, native vector env class, family class, horizon)
BUILTIN = {
    "Navigation2D": (
        "envs.navigation",
        "Navigation2D",
        "Navigation2DVectorEnv",
        "Navigation2DFamily",
        100,
    ),
    "HalfCheetahVel": (
        "envs.mujoco.half_cheetah",
        "HalfCheetahVel",
        "HalfCheetahVelVectorEnv",
        "HalfCheetahVelFamily",
        200,
    ),
    "HalfCheetahDir": (
        "envs.mujoco.half_cheetah",
        "HalfCheetahDir",
        "HalfCheetahDirVectorEnv",
        "HalfCheetahDirFamily",
        200,
    ),
    "AntVel": ("envs.mujoco.ant", "AntVel", "AntVelVectorEnv", "AntVelFamily", 200),
    "AntDir": ("envs.mujoco.ant", "AntDir", "AntDirVectorEnv", "AntDirFamily", 200),
    "AntGoal": ("envs.mujoco.ant", "AntGoal", "AntGoalVectorEnv", "AntGoalFamily", 200),
}

# Meta-World (optional extra, ``envs.metaworld``): name -> benchmark; env_kwargs take
# env_name (ML1), split, seed and vectorization.
METAWORLD = {"MetaWorldML1": "ML1", "MetaWorldML10": "ML10", "MetaWorldML45": "ML45"}

_ID = re.compile(rf"^{NAMESPACE}/(\w+)-v0$")


def env_id(name: str) -> str:
    """``"HalfCheetahVel"`` -> ``"metarl/HalfCheetahVel-v0"``."""
    return f"{NAMESPACE}/{name}-v0"


def register() -> None:
    """Register the built-in ids with gymnasium; calling it again does nothing."""
    for name, (module, env_cls, vector_cls, _, horizon) in BUILTIN.items():
        if env_id(name) in gym.registry:
            continue
        gym.register(
            id=env_id(name),
            entry_point=f"{module}:{env_cls}",
            vector_entry_point=f"{module}:{vector_cls}",
            max_episode_steps=horizon,
        )


def get_family(name_or_id: str, **kwargs) -> TaskFamily:
    """A task family by name, gymnasium id or ``"module:Class"``.

    Args:
        name_or_id: ``"HalfCheetahVel"``, ``"metarl/HalfCheetahVel-v0"``, or
            ``"my_pkg.tasks:MyFamily"`` (a class or factory returning a
            ``TaskFamily``, or a ``TaskFamily`` instance).
        **kwargs: constructor arguments, e.g. ``low=0.0, high=2.0``.
    """
    if ":" in name_or_id:
        return _load_user_family(name_or_id, kwargs)
    match = _ID.match(name_or_id)
    name = match.group(1) if match else name_or_id
    if name in METAWORLD:
        from envs.metaworld import MetaWorldFamily

        return MetaWorldFamily(METAWORLD[name], **kwargs)
    if name not in BUILTIN:
        known = [*BUILTIN, *METAWORLD]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"unknown task family {name_or_id!r}; {hint}known: {', '.join(known)} "
            f"(or their ids {env_id('<Name>')}, or 'module:Class')"
        )
    module, *_, family_cls, _ = BUILTIN[name]
    return getattr(importlib.import_module(module), family_cls)(**kwargs)


def _load_user_family(path: str, kwargs: dict) -> TaskFamily:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(
            f"cannot import module {module_name!r} of task family {path!r}: {e}"
        ) from e
    if not hasattr(module, attr):
        raise ValueError(f"module {module_name!r} has no {attr!r} (task family {path!r})")
    obj = getattr(module, attr)
    family = obj
    if callable(obj) and not isinstance(obj, TaskFamily):
        try:
            family = obj(**kwargs)
        except TypeError as e:  # wrong arguments for the user's constructor
            raise ValueError(
                f"cannot build task family {path!r} with arguments {kwargs}: {e}"
            ) from e
    if not isinstance(family, TaskFamily):
        raise ValueError(
            f"{path!r} is not a task family: it needs name, max_episode_steps, "
            "sample_tasks, make_env and make_vector_env (see envs.base.TaskFamily)"
        )
    return family
