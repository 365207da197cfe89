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
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metarl.distributed import SINGLE_PROCESS, Shard
from metarl.functional import Params, call, detach_params, expand_params, flatten, params_of
from metarl.rl.adaptation import (
    TrainBatches,
    adapt_through,
    inner_iterates,
    inner_names_of,
    inner_step,
    split_rates,
    with_rates,
)
from metarl.rl.baseline import linear_baseline_values
from metarl.rl.episodes import Episodes, TaskEnv
from metarl.rl.fisher import StructuredCurvature, make_fisher_product, structured_layout
from metarl.rl.kfac import kfac_preconditioner
from metarl.rl.losses import inner_loss, log_probs, mean_kl, surrogate, surrogate_loss
from metarl.rl.mlp_fisher import Buffers, PolicyFisher, mlp_layout
from metarl.rl.returns import discounted_returns, generalized_advantages, normalize_per_task
from metarl.rl.sampler import rollout
from metarl.rl.trpo import check_trpo_arguments, flat_gradient, line_search, natural_gradient_step


def clock(device: torch.device) -> float:
    """Seconds now, once the device has run what was queued: phase times hold on a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


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
    iterates: the stacked (T, ...) constant parameters before every inner step and
    after the last (``rl.adaptation.inner_iterates``): they sampled ``train``'s
    episodes and ``valid``.
    valid: episodes of the adapted policies, with their advantages and their
    log-probabilities under the parameters that sampled them (``valid_params``).
    """

    train: TrainBatches
    iterates: list[Params]
    valid: Episodes
    valid_advantages: Tensor
    valid_log_probs: Tensor

    @property
    def valid_params(self) -> Params:
        return self.iterates[-1]


def sample_meta_batch(env: TaskEnv, policy: nn.Module, config, env_seeds: list[int],
                      generator: torch.Generator, shard: Shard = SINGLE_PROCESS,
                      rates: Params | None = None) -> tuple[MetaBatch, dict[str, float]]:
    """Roll out and adapt on every task of ``env``; returns the batch and its statistics.

    env_seeds: one env reset seed per rollout (``config.training_inner_steps`` + 1).
    rates: Meta-SGD's learned inner rates by parameter name (else ``config.inner_lr``).
    shard: with several processes, ``env`` holds this process's block of the
    ``config.meta_batch_size`` tasks; the statistics are over all of them.
    """
    loss = inner_loss(config.inner_objective)
    rate, inner_names = rates or config.inner_lr, inner_names_of(policy, config)
    stats: dict[str, float] = {"time/sampling": 0.0, "time/adaptation": 0.0}
    block, first_env = None, 0
    if shard.world_size > 1:
        block = (shard.tasks(config.meta_batch_size), config.meta_batch_size)
        first_env = block[0].start * env.episodes_per_task
    weight = shard.weight(config.meta_batch_size)  # 1 for one process
    train: TrainBatches = []
    params = detach_params(expand_params(params_of(policy), env.num_tasks))
    device = next(iter(params.values())).device
    iterates = [params]
    inner_steps = config.training_inner_steps
    for step in range(inner_steps + 1):
        tick = clock(device)
        episodes = rollout(env, policy, params, config.horizon, env_seeds[step] + first_env,
                           generator, block)
        stats["time/sampling"] += clock(device) - tick
        stats[f"return/after_{step}_steps"] = weight * episodes.returns().mean().item()
        if episodes.success is not None:  # Meta-World: the share of successful episodes
            stats[f"success/after_{step}_steps"] = weight * episodes.success.mean().item()
        adv = advantages(episodes, config.gamma, config.gae_lambda)
        if step == inner_steps:
            break
        train.append((episodes, adv))
        tick = clock(device)
        # One step from the current constants equals the whole chain from the
        # meta-parameters that the TRPO closures differentiate.
        params = inner_step(policy, params, episodes, adv, loss, rate, inner_names)
        iterates.append(params)
        stats["time/adaptation"] += clock(device) - tick
    with torch.no_grad():
        old_log_probs = log_probs(policy, params, episodes)
    steps = sum(e.mask.sum().item() for e, _ in train) + episodes.mask.sum().item()
    stats["env_steps"] = steps
    if shard.world_size > 1:  # returns: means over all tasks; env steps: the total
        keys = [k for k in stats if k.startswith(("return/", "success/"))] + ["env_steps"]
        stats.update(zip(keys, shard.sum_floats(*[stats[k] for k in keys])))
    return MetaBatch(train, iterates, episodes, adv, old_log_probs), stats


def meta_update(policy: nn.Module, batch: MetaBatch, config, shard: Shard = SINGLE_PROCESS,
                rates: nn.Module | None = None) -> dict[str, float]:
    """TRPO step on the policy's meta-parameters (written into the module), and on
    Meta-SGD's ``rates`` (a ``metarl.meta.MetaSGDRates``) with them.

    With several processes, every mean over this process's tasks (losses, KLs,
    gradients, Fisher products, K-FAC factors) is pooled into the mean over the
    meta-batch (``Shard.pooled``), so all processes take the same step.
    """
    check_trpo_arguments(config.max_kl, config.line_search_ratio, config.line_search_steps)
    pool = shard.pooled(config.meta_batch_size)
    meta_params = params_of(policy)
    if rates is not None:
        meta_params = with_rates(meta_params, rates.as_dict())
    meta_params = detach_params(meta_params)
    device = next(iter(meta_params.values())).device
    valid, num_tasks = batch.valid, batch.valid.num_tasks
    loss, lr = inner_loss(config.inner_objective), config.inner_lr
    inner_names = inner_names_of(policy, config)
    with torch.no_grad():
        old_dist = call(policy, batch.valid_params, valid.obs)

    def adapted(params: Params) -> Params:
        return adapt_through(policy, params, batch.train, loss, lr, config.first_order,
                             num_tasks, inner_names)

    def surrogate_through_adaptation(params: Params) -> Tensor:
        return surrogate_loss(policy, adapted(params), valid, batch.valid_advantages,
                              batch.valid_log_probs)

    def kl_through_adaptation(params: Params) -> Tensor:
        return mean_kl(old_dist, call(policy, adapted(params), valid.obs), valid.mask)

    def evaluate(params: Params) -> tuple[float, float]:  # a line-search candidate
        last = inner_iterates(policy, params, batch.train, loss, lr, num_tasks,
                              inner_names)[-1]
        with torch.no_grad():
            dist = call(policy, last, valid.obs)
            values = torch.stack([
                surrogate(dist.log_prob(valid.actions), batch.valid_log_probs,
                          batch.valid_advantages, valid.mask),
                mean_kl(old_dist, dist, valid.mask)]).double()
        loss_value, kl = pool(values).tolist()
        return loss_value, kl

    tick = clock(device)
    layout, curvature = structured_layout(policy, config), None
    if layout is not None:  # J^T of the surrogate's gradient at the adapted policies
        curvature = StructuredCurvature(layout, meta_params, batch.train, batch.iterates, valid,
                                        config.inner_objective, lr, config.first_order, policy,
                                        inner_names)
        grad = curvature.meta_gradient(batch.valid_advantages)
        with torch.no_grad():  # every ratio is 1 at the policies that sampled ``valid``
            loss_before = surrogate(batch.valid_log_probs, batch.valid_log_probs,
                                    batch.valid_advantages, valid.mask)
    else:
        loss_before, grad = flat_gradient(surrogate_through_adaptation, meta_params)
    loss_before, grad = pool(loss_before).item(), pool(grad)
    timing = {"time/gradient": clock(device) - tick}

    tick = clock(device)
    fisher = make_fisher_product(policy, meta_params, batch.train, batch.iterates, valid,
                                 config, kl_through_adaptation, curvature)
    preconditioner = None
    if config.cg_preconditioner == "kfac":
        mlp = mlp_layout(policy)
        if mlp is None:
            raise ValueError("cg_preconditioner: kfac supports metarl's MLP policies only")
        policy_fisher = (curvature.fisher if curvature is not None
                         else PolicyFisher(mlp, batch.valid_params, valid, Buffers()))
        preconditioner = kfac_preconditioner(policy_fisher, meta_params, config.kfac_damping,
                                             pool)
    full_step = natural_gradient_step(grad, lambda v: pool(fisher(v)), config.max_kl,
                                      config.cg_damping, config.cg_iters, preconditioner)
    timing["time/cg"] = clock(device) - tick

    tick = clock(device)
    if full_step is None:  # zero gradient or a broken Fisher product: no step
        new_params, info = meta_params, {"accepted": False, "backtracks": 0,
                                         "loss_after": loss_before, "kl": 0.0}
    else:
        new_params, info = line_search(evaluate, meta_params, flatten(meta_params), full_step,
                                       loss_before, config.max_kl, config.line_search_ratio,
                                       config.line_search_steps)
    timing["time/line_search"] = clock(device) - tick
    policy_params, new_rates = split_rates(new_params, lr)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            p.copy_(policy_params[name])
        for name, p in (rates.as_dict().items() if rates is not None else ()):
            p.copy_(new_rates[name])
    return {"surrogate/before": loss_before, "surrogate/after": info["loss_after"],
            "trpo/kl": info["kl"], "trpo/line_search_steps": info["backtracks"],
            "trpo/accepted": float(info["accepted"]), **timing}
