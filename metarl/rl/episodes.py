"""A batch of episodes for T tasks x E episodes x H time steps."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass(frozen=True)
class Episodes:
    """Tensors of shape (T, E, H, ...): tasks, episodes per task, time.

    obs (T, E, H, obs_dim) in the policy's dtype (float32, float64 for exactness
    checks); actions (T, E, H, act_dim) or (T, E, H) for discrete actions; rewards
    (T, E, H); mask (T, E, H) float, 1 while the episode runs and 0 after it
    terminated early (those steps are padding).
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    mask: Tensor

    @property
    def num_tasks(self) -> int:
        return self.obs.shape[0]

    @property
    def episodes_per_task(self) -> int:
        return self.obs.shape[1]

    @property
    def horizon(self) -> int:
        return self.obs.shape[2]

    def returns(self) -> Tensor:
        """Undiscounted return of every episode, (T, E)."""
        return (self.rewards * self.mask).sum(dim=-1)

    def to(self, device: torch.device | str) -> Episodes:
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def double(self) -> Episodes:
        """float64 copy (for finite-difference tests); discrete actions stay integer."""
        conv = {f.name: getattr(self, f.name) for f in fields(self)}
        conv = {k: v.double() if v.is_floating_point() else v for k, v in conv.items()}
        return replace(self, **conv)


@runtime_checkable
class TaskEnv(Protocol):
    """What the sampler and the training loop need of a vector env of T tasks x E episodes.

    Sub-envs are task-major: sub-env ``t * E + e`` runs episode e of task t (``envs.base``
    builds such envs from any ``gymnasium.Env`` with ``set_task``). ``reset`` and ``step``
    follow gymnasium's ``VectorEnv``: arrays with a leading dimension ``num_envs``.
    An env whose ``metadata["hold_ended"]`` is true takes ``reset(options={"hold_ended":
    True})`` and then does not simulate episodes that ended (the sampler's data
    are the same either way).
    """

    num_tasks: int
    episodes_per_task: int
    num_envs: int
    single_observation_space: Any
    single_action_space: Any

    def set_tasks(self, tasks: list) -> None: ...

    def reset(self, *, seed: int | None = None, options: dict | None = None): ...

    def step(self, actions): ...

    def close(self) -> None: ...
