"""Roll out T tasks x E episodes at once, each task with its own policy parameters.

One batched policy call per time step for all T*E environments: the stacked
parameters (leading dim T) go through ``metarl.functional.call``, which the
models turn into one batched matmul per layer. Randomness comes only from the
env seed and an explicit ``torch.Generator``: same seeds, same episodes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, distributions, nn

from metarl.functional import call
from metarl.rl.episodes import Episodes, TaskEnv


class EnvOutputError(ValueError):
    """A task env returned something the sampler cannot use (non-finite, wrong shape)."""


def _env_name(env) -> str:
    """The user's env class inside vector envs and wrappers, else the vector env's."""
    inner = env
    while getattr(inner, "envs", None) is None and getattr(inner, "env", None) is not None:
        inner = inner.env
    envs = getattr(inner, "envs", None)  # gymnasium's SyncVectorEnv of single envs
    return type(envs[0].unwrapped).__name__ if envs else type(env).__name__


def _env_call(env, method: str, *args, **kwargs):
    """env.reset / env.step; a ValueError from the env's code becomes one line naming it."""
    try:
        return getattr(env, method)(*args, **kwargs)
    except ValueError as err:
        raise EnvOutputError(f"{_env_name(env)}: {err}") from err


def _check_finite(env, episodes: Episodes) -> None:
    """Rewards and the observations of running steps must be finite: say where not."""
    valid = episodes.mask.bool()
    obs_ok = torch.isfinite(episodes.obs.reshape(*valid.shape, -1)).all(-1) | ~valid
    for name, ok in (("reward", torch.isfinite(episodes.rewards)), ("observation", obs_ok)):
        if not ok.all():
            task, episode, step = (int(i) for i in (~ok).nonzero()[0])
            raise EnvOutputError(f"{_env_name(env)} produced a non-finite {name} (task {task}, "
                                 f"episode {episode}, step {step}); the sampler needs finite "
                                 "rewards and observations")


def _zero_after_end(x: Tensor, mask: Tensor) -> Tensor:
    """x (T, E, ...) with zeros where mask (T, E) is 0."""
    running = (mask > 0).view(*mask.shape, *[1] * (x.dim() - 2))
    return torch.where(running, x, torch.zeros((), dtype=x.dtype, device=x.device))


def _noise(shape: torch.Size, block: tuple[slice, int] | None, draw) -> Tensor:
    """draw(shape) for all tasks, then this process's block of tasks (leading dim)."""
    if block is None:
        return draw(shape)
    tasks, total = block
    return draw((total, *shape[1:]))[tasks]


def sample_action(dist: distributions.Distribution, generator: torch.Generator | None,
                  block: tuple[slice, int] | None = None) -> Tensor:
    """Draw from the policy's distribution with an explicit generator.

    Supports Independent(Normal) (Gaussian policies) and Categorical.
    block: (this process's tasks, total tasks) when the meta-batch is sharded:
    the noise of every task is drawn and the block kept, so task j's actions do
    not depend on how many processes share the meta-batch.
    """
    base = dist.base_dist if isinstance(dist, distributions.Independent) else dist
    if isinstance(base, distributions.Normal):
        loc = base.loc
        noise = _noise(loc.shape, block, lambda shape: torch.randn(
            shape, generator=generator, device=loc.device, dtype=loc.dtype))
        return loc + base.scale * noise
    if isinstance(base, distributions.Categorical):  # inverse CDF of uniform noise
        probs = base.probs
        uniform = _noise(probs.shape[:-1], block, lambda shape: torch.rand(
            shape, generator=generator, device=probs.device, dtype=probs.dtype))
        below = (probs.cumsum(-1) <= uniform.unsqueeze(-1)).sum(-1)
        return below.clamp(max=probs.shape[-1] - 1)
    raise TypeError(f"cannot sample from {type(dist).__name__}; expected a Gaussian or Categorical")


def env_actions(actions: Tensor, action_space) -> np.ndarray:
    """Policy actions (T, E, ...) -> what the env takes (T*E, ...), clipped to a Box."""
    out = actions.detach().cpu().numpy()
    out = out.reshape(-1, *out.shape[2:])
    if hasattr(action_space, "low") and action_space.dtype.kind == "f":
        out = np.clip(out, action_space.low, action_space.high)
    return out


@torch.no_grad()
def rollout(env: TaskEnv, policy: nn.Module, params: Mapping[str, Tensor], horizon: int,
            seed: int | None = None, generator: torch.Generator | None = None,
            block: tuple[slice, int] | None = None) -> Episodes:
    """Run every sub-env of ``env`` for up to ``horizon`` steps.

    env: a task-major vector env (``num_tasks`` T, ``episodes_per_task`` E,
        ``num_envs`` = T*E; see ``envs.base``).
    params: stacked policy parameters, every tensor (T, ...).
    seed: passed to ``env.reset`` (sub-env i gets seed + i).
    block: (this process's tasks, total tasks) of a sharded meta-batch
        (``sample_action``); the caller offsets ``seed`` by the block's first env.
    Returns Episodes with (T, E, H, ...) tensors on the parameters' device;
    actions are the policy's samples (before clipping to the action space).
    """
    num_tasks, per_task = env.num_tasks, env.episodes_per_task
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    first = next(iter(params.values()))
    device, dtype = first.device, first.dtype  # float32, or float64 for exactness checks
    # An env that can hold ended episodes need not simulate the ones we discard.
    hold = {"hold_ended": True} if getattr(env, "metadata", {}).get("hold_ended") else None
    obs, _ = _env_call(env, "reset", seed=seed, options=hold)
    if np.shape(obs)[1:] != env.single_observation_space.shape:
        raise EnvOutputError(f"{_env_name(env)}: reset returned observations of shape "
                             f"{np.shape(obs)[1:]}, its observation_space says "
                             f"{env.single_observation_space.shape}")
    alive = np.ones(env.num_envs, dtype=bool)
    succeeded, reports_success = np.zeros(env.num_envs, dtype=bool), False
    all_obs, all_actions, all_rewards, all_masks = [], [], [], []
    for _ in range(horizon):
        obs_t = torch.as_tensor(obs, dtype=dtype, device=device)
        obs_t = obs_t.view(num_tasks, per_task, *obs_t.shape[1:])
        actions = sample_action(call(policy, params, obs_t), generator, block)
        obs_next, rewards, terminated, truncated, info = _env_call(
            env, "step", env_actions(actions, env.single_action_space))
        if "success" in info:  # an episode succeeds if it does at any step
            reports_success = True
            succeeded |= alive & (np.asarray(info["success"], dtype=np.float64) > 0)
        mask = torch.as_tensor(alive, dtype=dtype, device=device).view(num_tasks, per_task)
        if not alive.all():  # after an episode's end (held or reset env): zeros, not data
            obs_t, actions = _zero_after_end(obs_t, mask), _zero_after_end(actions, mask)
        all_obs.append(obs_t)
        all_actions.append(actions)
        all_masks.append(mask)
        rewards = torch.as_tensor(np.where(alive, rewards, 0.0), dtype=dtype)
        all_rewards.append(rewards.view(num_tasks, per_task))
        alive &= ~(np.asarray(terminated) | np.asarray(truncated))
        obs = obs_next
        # No early exit when every episode has ended: the action noise drawn per
        # step must not depend on this process's tasks (sharded meta-batches).

    def stack(items: list[Tensor]) -> Tensor:
        return torch.stack(items, dim=2).to(device)

    success = (torch.as_tensor(succeeded, dtype=dtype, device=device)
               .view(num_tasks, per_task) if reports_success else None)
    episodes = Episodes(obs=stack(all_obs), actions=stack(all_actions),
                        rewards=stack(all_rewards), mask=stack(all_masks), success=success)
    _check_finite(env, episodes)
    return episodes
