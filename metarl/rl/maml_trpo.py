"""One meta-iteration of MAML-TRPO, batched over the T tasks of a meta-batch.

    sample tasks -> for each inner step: roll out with the current adapted
    params, fit baseline + GAE, take a policy-gradient step (all tasks at once)
    -> roll out the adapted policies (validation episodes)
    -> TRPO on the meta-parameters: surrogate and KL of the adapted policies,
       differentiated through the adaptation, conjugate gradient on
       Fisher-vector products, backtracking line search under max_kl.

The adaptation is recomputed from the meta-parameters inside the TRPO
closures, so the meta-gradient, every line-search loss and KL, and (with
``fisher: exact``) every Fisher-vector product go through it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metarl.distributed import SINGLE_PROCESS, Shard
from metarl.functional import Params, call, detach_params, expand_params, params_of
from metarl.meta import adapt
from metarl.rl.baseline import linear_baseline_values
from metarl.rl.episodes import Episodes
from metarl.rl.fisher import (
    adaptation_fisher_product,
    adaptation_points,
    adapted_fisher_product,
    adapted_values,
    subsample_episodes,
)
from metarl.rl.losses import inner_loss, log_probs, mean_kl, surrogate, surrogate_loss
from metarl.rl.returns import discounted_returns, generalized_advantages, normalize_per_task
from metarl.rl.sampler import rollout
from metarl.rl.trpo import trpo_step


def advantages(episodes: Episodes, gamma: float, gae_lambda: float) -> Tensor:
    """GAE on a linear feature baseline fitted per task, normalised per task: (T, E, H)."""
    returns = discounted_returns(episodes.rewards, episodes.mask, gamma)
    values = linear_baseline_values(episodes.obs, returns, episodes.mask)
    adv = generalized_advantages(episodes.rewards, values, episodes.mask, gamma, gae_lambda)
    return normalize_per_task(adv, episodes.mask)


@dataclass
class MetaBatch:
    """Everything one meta-iteration sampled; the TRPO step only reads it.

    train: per inner step, (episodes, advantages) used for that step's update.
    points: the stacked (T, ...) constant parameters before every inner step and
    after the last (``rl.fisher.adaptation_points``): they sampled ``train``'s
    episodes and ``valid``.
    valid: episodes of the adapted policies, with their advantages and their
    log-probabilities under the parameters that sampled them (``valid_params``).
    """

    train: list[tuple[Episodes, Tensor]]
    points: list[Params]
    valid: Episodes
    valid_advantages: Tensor
    valid_log_probs: Tensor

    @property
    def valid_params(self) -> Params:
        return self.points[-1]


def training_inner_steps(config) -> int:
    """Inner steps during meta-training: the comparison methods train without adaptation.

    pretrained and oracle: one policy trained with TRPO on the task distribution;
    random: no training at all. All are fine-tuned the same way at test time.
    """
    return config.inner_steps if config.method == "maml" else 0


def adapt_policy(policy: nn.Module, meta_params: Mapping[str, Tensor],
                 train: list[tuple[Episodes, Tensor]], config,
                 num_tasks: int | None = None) -> Params:
    """Stacked (T, ...) adapted parameters after one inner step per train batch.

    num_tasks: T, needed only when ``train`` is empty (no inner step).
    """
    loss = inner_loss(config.inner_objective)
    params = expand_params(meta_params, num_tasks or train[0][0].num_tasks)
    for episodes, adv in train:
        params = adapt(lambda p, batch: loss(policy, p, *batch), params, (episodes, adv),
                       config.inner_lr, 1, config.first_order)
    return params


def sample_meta_batch(env, policy: nn.Module, config, env_seeds: list[int],
                      generator: torch.Generator,
                      shard: Shard = SINGLE_PROCESS) -> tuple[MetaBatch, dict[str, float]]:
    """Roll out and adapt on every task of ``env``; returns the batch and its statistics.

    env_seeds: one env reset seed per rollout (training_inner_steps + 1 of them).
    shard: with several processes, ``env`` holds this process's block of the
    ``config.meta_batch_size`` tasks; the statistics are over all of them.
    """
    loss = inner_loss(config.inner_objective)
    stats: dict[str, float] = {"time/sampling": 0.0, "time/adaptation": 0.0}
    block, first_env = None, 0
    if shard.world_size > 1:
        block = (shard.tasks(config.meta_batch_size), config.meta_batch_size)
        first_env = block[0].start * env.episodes_per_task
    weight = shard.weight(config.meta_batch_size)  # 1 for one process
    train: list[tuple[Episodes, Tensor]] = []
    params = detach_params(expand_params(params_of(policy), env.num_tasks))
    points = [params]
    inner_steps = training_inner_steps(config)
    for step in range(inner_steps + 1):
        tick = time.perf_counter()
        episodes = rollout(env, policy, params, config.horizon, env_seeds[step] + first_env,
                           generator, block)
        stats["time/sampling"] += time.perf_counter() - tick
        stats[f"return/after_{step}_steps"] = weight * episodes.returns().mean().item()
        adv = advantages(episodes, config.gamma, config.gae_lambda)
        if step == inner_steps:
            break
        train.append((episodes, adv))
        tick = time.perf_counter()
        # One step from the current constants equals the whole chain from the
        # meta-parameters that the TRPO closures differentiate.
        params = adapted_values(policy, params, episodes, adv, loss, config.inner_lr)
        points.append(params)
        stats["time/adaptation"] += time.perf_counter() - tick
    with torch.no_grad():
        old_log_probs = log_probs(policy, params, episodes)
    steps = sum(e.mask.sum().item() for e, _ in train) + episodes.mask.sum().item()
    stats["env_steps"] = steps
    if shard.world_size > 1:  # returns: means over all tasks; env steps: the total
        keys = [k for k in stats if k.startswith("return/")] + ["env_steps"]
        stats.update(zip(keys, shard.sum_floats(*[stats[k] for k in keys])))
    return MetaBatch(train, points, episodes, adv, old_log_probs), stats


def adapted_constants(policy: nn.Module, meta_params: Mapping[str, Tensor],
                      train: list[tuple[Episodes, Tensor]], config, num_tasks: int) -> Params:
    """The values of ``adapt_policy`` without any graph (for the line search)."""
    return adaptation_points(policy, meta_params, train, inner_loss(config.inner_objective),
                             config.inner_lr, num_tasks)[-1]


def fisher_product(policy: nn.Module, meta_params: Params, batch: MetaBatch, config):
    """The config's Fisher-vector product (``rl.fisher``) on its share of validation episodes.

    None for ``fisher: autograd``: ``trpo_step`` then differentiates the KL's
    gradient through the adaptation (third order, the slow reference).
    """
    if config.fisher == "autograd":
        return None
    fraction = config.fisher_fraction
    valid = subsample_episodes(batch.valid, fraction)
    with torch.no_grad():
        old_dist = call(policy, batch.valid_params, valid.obs)
    if config.fisher == "adapted":
        return adapted_fisher_product(policy, meta_params, batch.valid_params, valid, old_dist)
    # The adaptation's Jacobian is estimated on the same share of training episodes,
    # at the points the adaptation on all episodes went through: the KL's Hessian
    # is the Fisher matrix only at the policies that sampled ``valid``.
    train = []
    for episodes, adv in batch.train:
        part = subsample_episodes(episodes, fraction)
        train.append((part, adv[:, :part.episodes_per_task]))
    loss = inner_loss(config.inner_objective)
    return adaptation_fisher_product(policy, meta_params, train, loss, config.inner_lr,
                                     config.first_order, valid, old_dist, batch.points)


def meta_update(policy: nn.Module, batch: MetaBatch, config,
                shard: Shard = SINGLE_PROCESS) -> dict[str, float]:
    """TRPO step on the policy's meta-parameters (written into the module).

    With several processes, every closure returns this process's weighted share
    and ``trpo_step`` sums them, so all processes take the same step.
    """
    meta_params = {k: v.detach() for k, v in params_of(policy).items()}
    valid, num_tasks = batch.valid, batch.valid.num_tasks
    weight = shard.weight(config.meta_batch_size)  # 1 for one process
    with torch.no_grad():
        old_dist = call(policy, batch.valid_params, valid.obs)

    def surrogate_through_adaptation(params: Params) -> Tensor:
        adapted = adapt_policy(policy, params, batch.train, config, num_tasks)
        return weight * surrogate_loss(policy, adapted, valid, batch.valid_advantages,
                                       batch.valid_log_probs)

    def kl_through_adaptation(params: Params) -> Tensor:
        adapted = adapt_policy(policy, params, batch.train, config, num_tasks)
        return weight * mean_kl(old_dist, call(policy, adapted, valid.obs), valid.mask)

    def evaluate(params: Params) -> tuple[float, float]:  # a line-search candidate
        adapted = adapted_constants(policy, params, batch.train, config, num_tasks)
        with torch.no_grad():
            dist = call(policy, adapted, valid.obs)
            loss = surrogate(dist.log_prob(valid.actions), batch.valid_log_probs,
                             batch.valid_advantages, valid.mask)
            return weight * loss.item(), weight * mean_kl(old_dist, dist, valid.mask).item()

    tick = time.perf_counter()
    local_fisher = fisher_product(policy, meta_params, batch, config)
    fisher = None if local_fisher is None else (lambda v: weight * local_fisher(v))
    setup = time.perf_counter() - tick
    new_params, info = trpo_step(meta_params, surrogate_through_adaptation,
                                 kl_through_adaptation, config.max_kl, fvp_fn=fisher,
                                 evaluate_fn=evaluate, damping=config.cg_damping,
                                 cg_iters=config.cg_iters,
                                 backtrack_ratio=config.line_search_ratio,
                                 max_backtracks=config.line_search_steps,
                                 all_reduce=shard.all_reduce)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            p.copy_(new_params[name])
    return {"surrogate/before": info["loss_before"], "surrogate/after": info["loss_after"],
            "trpo/kl": info["kl"], "trpo/line_search_steps": info["backtracks"],
            "trpo/accepted": float(info["accepted"]),
            "time/gradient": info["time/gradient"], "time/cg": info["time/cg"] + setup,
            "time/line_search": info["time/line_search"]}
