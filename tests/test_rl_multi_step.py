"""The RL multi-step loss: TRPO on the mean over k = 1..K of the policies after k inner
steps, against its definition (autograd gradient of the mean surrogate through the
adaptation, third-order Hessian of the mean KL)."""

import numpy as np
import pytest
import torch

from envs.navigation import Navigation2DFamily
from metarl.config import load_config
from metarl.functional import call, detach_params, flatten, params_of
from metarl.models import GaussianPolicy
from metarl.rl import maml_trpo
from metarl.rl.adaptation import adapt_through
from metarl.rl.fisher import third_order_product
from metarl.rl.losses import inner_loss, log_probs, mean_kl, surrogate_loss
from metarl.rl.maml_trpo import meta_update, outer_terms, sample_meta_batch
from metarl.rl.trpo import flat_gradient, natural_gradient_step
from metarl.schema import ConfigError


def float64_batch(overrides=()):
    """A real navigation meta-batch (3 tasks, 2 inner steps) sampled by a float64 policy."""
    config = load_config(data={"kind": "rl"}, overrides=[
        "meta_batch_size=3", "episodes_per_task=5", "horizon=15", "hidden_sizes=[8]",
        "inner_steps=2", "inner_lr=0.5", "activation=tanh", "multi_step_loss=true",
        "max_kl=0.01", *overrides])
    family = Navigation2DFamily(max_episode_steps=config.horizon)
    env = family.make_vector_env(family.sample_tasks(np.random.default_rng(0), 3), 5)
    torch.manual_seed(0)
    policy = GaussianPolicy(2, 2, (8,), "tanh", init_std=0.5).double()
    batch, _ = sample_meta_batch(env, policy, config, [1, 2, 3],
                                 torch.Generator().manual_seed(0))
    return config, policy, batch


def reference_objectives(policy, batch, config):
    """(objective, KL) of the multi-step loss from its definition, as functions of the
    meta-parameters: means over k = 1, 2 of the policies after k inner steps, each on
    the episodes it sampled."""
    loss = inner_loss(config.inner_objective)
    with torch.no_grad():  # (steps, episodes, advantages, log-probs under their sampler)
        terms = [(k, e, a, log_probs(policy, batch.iterates[k], e))
                 for k, (e, a) in enumerate(batch.train) if k > 0]
        terms.append((2, batch.valid, batch.valid_advantages, batch.valid_log_probs))
        olds = [call(policy, batch.iterates[k], e.obs) for k, e, _, _ in terms]

    def adapted(params, k):
        return adapt_through(policy, params, batch.train[:k], loss, config.inner_lr,
                             config.first_order)

    def objective(params):
        return sum(surrogate_loss(policy, adapted(params, k), e, a, lp)
                   for k, e, a, lp in terms) / len(terms)

    def kl(params):
        return sum(mean_kl(old, call(policy, adapted(params, k), e.obs), e.mask)
                   for (k, e, _, _), old in zip(terms, olds)) / len(terms)

    return objective, kl


def test_outer_terms_are_the_last_step_alone_without_the_option():
    config, policy, batch = float64_batch()
    (last,) = outer_terms(policy, batch, False)
    assert last.steps == 2 and last.episodes is batch.valid
    first, second = outer_terms(policy, batch, True)
    assert (first.steps, second.steps) == (1, 2)
    assert first.episodes is batch.train[1][0]
    expected = log_probs(policy, batch.iterates[1], first.episodes)
    assert torch.equal(first.log_probs, expected)


@pytest.mark.parametrize("overrides", [[], ["fisher_backend=autograd"], ["fisher=autograd"],
                                       ["inner_objective=dice"]])
def test_multi_step_update_is_the_step_of_the_mean_objective(overrides, monkeypatch):
    """The gradient and the Fisher product meta_update hands to conjugate gradient are
    those of the mean objective and the mean KL (to rounding), and what it reports after
    the line search is the mean objective and KL at the parameters it wrote."""
    config, policy, batch = float64_batch(overrides)
    objective, kl = reference_objectives(policy, batch, config)
    meta = detach_params({k: v.clone() for k, v in params_of(policy).items()})
    vectors = torch.randn(3, flatten(meta).numel(), dtype=torch.float64,
                          generator=torch.Generator().manual_seed(0))
    seen = {}

    def recording_step(grad, fisher, *args, **kwargs):  # products are valid until the update
        seen.update(grad=grad, products=[fisher(v) for v in vectors])
        return natural_gradient_step(grad, fisher, *args, **kwargs)

    monkeypatch.setattr(maml_trpo, "natural_gradient_step", recording_step)
    stats = meta_update(policy, batch, config)

    _, grad = flat_gradient(objective, meta)
    torch.testing.assert_close(seen["grad"], grad, rtol=1e-10, atol=1e-13)
    fisher = third_order_product(kl, meta)
    for v, product in zip(vectors, seen["products"]):
        torch.testing.assert_close(product, fisher(v), rtol=1e-10, atol=1e-13)
    assert stats["trpo/accepted"] == 1.0
    after = {k: v.detach().clone().requires_grad_() for k, v in params_of(policy).items()}
    assert stats["surrogate/after"] == pytest.approx(objective(after).item(), rel=1e-9)
    assert stats["surrogate/after"] < stats["surrogate/before"]
    assert 0 < stats["trpo/kl"] <= config.max_kl
    assert stats["trpo/kl"] == pytest.approx(kl(after).item(), rel=1e-9)


def test_multi_step_update_differs_from_the_last_step_alone():
    config, policy, batch = float64_batch()
    start = {k: v.detach().clone() for k, v in params_of(policy).items()}
    meta_update(policy, batch, config)
    multi = flatten(detach_params(params_of(policy)))
    policy.load_state_dict({k: v.clone() for k, v in start.items()})
    config.multi_step_loss = False
    meta_update(policy, batch, config)
    last_only = flatten(detach_params(params_of(policy)))
    assert (multi - last_only).norm() > 0.1 * (multi - flatten(start)).norm()


@pytest.mark.parametrize("overrides, message", [
    (["inner_steps=1"], "needs inner_steps >= 2"),
    (["method=pretrained", "inner_steps=2"], "needs inner_steps >= 2"),
    (["inner_steps=2", "cg_preconditioner=kfac"], "kfac"),
])
def test_multi_step_loss_refuses_what_it_cannot_do(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(data={"kind": "rl"}, overrides=["multi_step_loss=true", *overrides])
