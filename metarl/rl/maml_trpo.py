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
from collections.abc import Callable
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


@dataclass(frozen=True)
class OuterTerm:
    """One term of the outer objective: the policies after ``steps`` inner steps, judged
    on the episodes they sampled (their advantages, and log-probabilities under them)."""

    steps: int
    episodes: Episodes
    advantages: Tensor
    log_probs: Tensor


def outer_terms(policy: nn.Module, batch: MetaBatch, multi_step_loss: bool) -> list[OuterTerm]:
    """What the TRPO step averages: the policies after the last inner step (MAML), or
    after each of the K inner steps (``multi_step_loss``): the episodes after step k < K
    are those the (k + 1)-th step adapted on, so no extra sampling is needed."""
    terms = [OuterTerm(len(batch.train), batch.valid, batch.valid_advantages,
                       batch.valid_log_probs)]
    if multi_step_loss:
        with torch.no_grad():
            terms[:0] = [OuterTerm(k, episodes, adv, log_probs(policy, batch.iterates[k], episodes))
                         for k, (episodes, adv) in enumerate(batch.train) if k > 0]
    return terms


def mean_of(values: list[Tensor]) -> Tensor:
    """The mean of equally shaped tensors; one term is returned as it is, bit for bit."""
    return values[0] if len(values) == 1 else torch.stack(values).mean(0)


def meta_update(policy: nn.Module, batch: MetaBatch, config, shard: Shard = SINGLE_PROCESS,
                rates: nn.Module | None = None) -> dict[str, float]:
    """TRPO step on the policy's meta-parameters (written into the module), and on
    Meta-SGD's ``rates`` (a ``metarl.meta.MetaSGDRates``) with them.

    The surrogate, the KL bound and the Fisher product are means over the
    ``outer_terms`` (one term unless ``config.multi_step_loss``). With several
    processes, every mean over this process's tasks (losses, KLs, gradients, Fisher
    products, K-FAC factors) is pooled into the mean over the meta-batch
    (``Shard.pooled``), so all processes take the same step.
    """
    check_trpo_arguments(config.max_kl, config.line_search_ratio, config.line_search_steps)
    pool = shard.pooled(config.meta_batch_size)
    meta_params = params_of(policy)
    if rates is not None:
        meta_params = with_rates(meta_params, rates.as_dict())
    meta_params = detach_params(meta_params)
    device = next(iter(meta_params.values())).device
    num_tasks = batch.valid.num_tasks
    loss, lr = inner_loss(config.inner_objective), config.inner_lr
    inner_names = inner_names_of(policy, config)
    terms = outer_terms(policy, batch, config.multi_step_loss)
    with torch.no_grad():
        old_dists = [call(policy, batch.iterates[t.steps], t.episodes.obs) for t in terms]

    def adapted(params: Params, steps: int) -> Params:
        return adapt_through(policy, params, batch.train[:steps], loss, lr, config.first_order,
                             num_tasks, inner_names)

    def surrogate_through_adaptation(params: Params) -> Tensor:
        return mean_of([surrogate_loss(policy, adapted(params, t.steps), t.episodes,
                                       t.advantages, t.log_probs) for t in terms])

    def kl_through_adaptation(term: OuterTerm, old_dist) -> Callable[[Params], Tensor]:
        return lambda params: mean_kl(old_dist, call(policy, adapted(params, term.steps),
                                                     term.episodes.obs), term.episodes.mask)

    def evaluate(params: Params) -> tuple[float, float]:  # a line-search candidate
        iterates = inner_iterates(policy, params, batch.train, loss, lr, num_tasks, inner_names)
        values = []
        with torch.no_grad():
            for term, old_dist in zip(terms, old_dists):
                dist = call(policy, iterates[term.steps], term.episodes.obs)
                values.append(torch.stack([
                    surrogate(dist.log_prob(term.episodes.actions), term.log_probs,
                              term.advantages, term.episodes.mask),
                    mean_kl(old_dist, dist, term.episodes.mask)]))
        loss_value, kl = pool(mean_of(values).double()).tolist()
        return loss_value, kl

    tick = clock(device)
    layout, curvatures = structured_layout(policy, config), [None] * len(terms)
    if layout is not None:  # J^T of the surrogate's gradient at the adapted policies
        curvatures = [StructuredCurvature(layout, meta_params, batch.train[:t.steps],
                                          batch.iterates[:t.steps + 1], t.episodes,
                                          config.inner_objective, lr, config.first_order,
                                          policy, inner_names) for t in terms]
        grad = mean_of([c.meta_gradient(t.advantages) for c, t in zip(curvatures, terms)])
        with torch.no_grad():  # every ratio is 1 at the policies that sampled the episodes
            loss_before = mean_of([surrogate(t.log_probs, t.log_probs, t.advantages,
                                             t.episodes.mask) for t in terms])
    else:
        loss_before, grad = flat_gradient(surrogate_through_adaptation, meta_params)
    loss_before, grad = pool(loss_before).item(), pool(grad)
    timing = {"time/gradient": clock(device) - tick}

    tick = clock(device)
    products = [make_fisher_product(policy, meta_params, batch.train[:t.steps],
                                    batch.iterates[:t.steps + 1], t.episodes, config,
                                    kl_through_adaptation(t, old), curvature)
                for t, old, curvature in zip(terms, old_dists, curvatures)]
    preconditioner = None
    if config.cg_preconditioner == "kfac":  # the config refuses it with multi_step_loss
        mlp = mlp_layout(policy)
        if mlp is None:
            raise ValueError("cg_preconditioner: kfac supports metarl's MLP policies only")
        policy_fisher = PolicyFisher(mlp, batch.valid_params, batch.valid, Buffers())
        preconditioner = kfac_preconditioner(policy_fisher, meta_params, config.kfac_damping,
                                             pool)
    full_step = natural_gradient_step(grad, lambda v: pool(mean_of([p(v) for p in products])),
                                      config.max_kl, config.cg_damping, config.cg_iters,
                                      preconditioner)
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
