"""Task families for meta-RL: 2D navigation and MuJoCo locomotion.

Importing ``envs`` registers nothing with gymnasium; call ``envs.register()``.
The MuJoCo families live in ``envs.mujoco`` (imported on use).
"""

from envs.adapter import EnvTaskFamily, TaskVectorWrapper, make_task_vector_env
from envs.base import Task, TaskFamily, TaskVectorEnv
from envs.registration import env_id, get_family, register

__all__ = [
    "EnvTaskFamily",
    "Task",
    "TaskFamily",
    "TaskVectorEnv",
    "TaskVectorWrapper",
    "env_id",
    "get_family",
    "make_task_vector_env",
    "register",
]
