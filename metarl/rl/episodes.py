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
    terminated early (those steps are padding); success (T, E) float, 1 where the
    episode succeeded at some step (envs that report ``info["success"]``, e.g.
    Meta-World), else None.
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    mask: Tensor
    success: Tensor | None = None

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

    def _tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}

    def to(self, device: torch.device | str) -> Episodes:
        return replace(self, **{k: v.to(device) for k, v in self._tensors().items()})

    def double(self) -> Episodes:
        """float64 copy (for finite-difference tests); discrete actions stay integer."""
        return replace(self, **{k: v.double() if v.is_floating_point() else v
                                for k, v in self._tensors().items()})


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
