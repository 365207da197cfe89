"""MAML-TRPO: meta-gradients and Fisher products through the adaptation, learning."""


import numpy as np
import pytest
import torch

from envs.navigation import Navigation2DFamily
from metarl.config import load_config
from metarl.functional import call, detach_params, expand_params, flatten, params_of, unflatten
from metarl.models import GaussianPolicy
from metarl.rl.adaptation import adapt_through, inner_iterates
from metarl.rl.fisher import autograd_product, subsample_episodes, third_order_product
from metarl.rl.losses import inner_loss, mean_kl, surrogate_loss
from metarl.rl.maml_trpo import sample_meta_batch


def adapt_policy(policy, params, train, config):
    return adapt_through(policy, params, train, inner_loss(config.inner_objective),
                         config.inner_lr, config.first_order)


def adapted_fisher_product(policy, meta, adapted, valid, old):
    """F' alone: the double-backward product with no adaptation Jacobian."""
    return autograd_product(policy, meta, [], inner_loss("reinforce"), 0.0, True, valid, old,
                            [adapted])


def hessian_product(fn, flat):
    """v -> Hessian of fn(flat) at flat, times v (the brute force of every test here)."""
    like = {"flat": flat.detach()}
    return third_order_product(lambda p: fn(p["flat"]), like)


def small_batch(inner_objective="reinforce", first_order=False, inner_steps=2):
    """A real navigation meta-batch with a tiny float64 policy."""
    config = load_config(data={"kind": "rl"}, overrides=[
        "meta_batch_size=3", "episodes_per_task=4", "horizon=12", "hidden_sizes=[6]",
        f"inner_steps={inner_steps}", f"inner_objective={inner_objective}", "inner_lr=0.5",
        f"first_order={str(first_order).lower()}", "activation=tanh"])
    family = Navigation2DFamily(max_episode_steps=config.horizon)
    env = family.make_vector_env(family.sample_tasks(np.random.default_rng(0), 3), 4)
    torch.manual_seed(0)
    policy = GaussianPolicy(2, 2, (6,), "tanh", init_std=0.5).double()
    batch, _ = sample_meta_batch(env, policy.float(), config, [1, 2, 3],
                                 torch.Generator().manual_seed(0))
    policy.double()
    to64 = lambda e: e.double()
    batch.train = [(to64(e), a.double()) for e, a in batch.train]
    batch.valid, batch.valid_advantages = to64(batch.valid), batch.valid_advantages.double()
    batch.valid_log_probs = batch.valid_log_probs.double()
    return config, policy, batch


def surrogate_of(policy, batch, config):
    return lambda params: surrogate_loss(policy, adapt_policy(policy, params, batch.train, config),
                                         batch.valid, batch.valid_advantages,
                                         batch.valid_log_probs)


def test_meta_gradient_of_surrogate_matches_finite_differences():
    # REINFORCE only: with fixed episodes, DiCE and LVC deliberately differ from the
    # derivative of the fixed-sample function (they add the sampling-distribution
    # term in expectation); tests/test_rl_losses.py checks those by enumeration.
    config, policy, batch = small_batch("reinforce")
    meta = detach_params(params_of(policy))
    objective = surrogate_of(policy, batch, config)
    flat = flatten(meta).clone().requires_grad_()
    (grad,) = torch.autograd.grad(objective(unflatten(flat, meta)), flat)
    eps, numeric = 1e-6, torch.zeros_like(grad)
    for i in range(flat.numel()):
        shift = torch.zeros_like(grad)
        shift[i] = eps
        plus = objective(require_grad(unflatten(flat.detach() + shift, meta))).item()
        minus = objective(require_grad(unflatten(flat.detach() - shift, meta))).item()
        numeric[i] = (plus - minus) / (2 * eps)
    torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-8)


def require_grad(params):
    return {k: v.detach().clone().requires_grad_() for k, v in params.items()}


@pytest.mark.parametrize("inner_objective,first_order", [("reinforce", False), ("lvc", False),
                                                          ("reinforce", True)])
def test_structured_fisher_product_equals_brute_force(inner_objective, first_order):
    config, policy, batch = small_batch(inner_objective, first_order)
    meta = detach_params(params_of(policy))
    adapted = adapt_policy(policy, require_grad(meta), batch.train, config)
    old = call(policy, detach_params(adapted), batch.valid.obs)
    flat = flatten(meta)
    kl = lambda f: mean_kl(old, call(policy, adapt_policy(policy, unflatten(f, meta),
                                                          batch.train, config), batch.valid.obs),
                           batch.valid.mask)
    brute = hessian_product(kl, flat)
    fast = autograd_product(policy, meta, batch.train, inner_loss(inner_objective),
                            config.inner_lr, first_order, batch.valid, old)
    for seed in range(3):
        v = torch.randn(flat.numel(), generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
        torch.testing.assert_close(fast(v), brute(v), rtol=1e-7, atol=1e-10)


def test_adapted_fisher_product_is_the_kl_hessian_at_the_adapted_policies():
    # Brute force: shift every task's adapted parameters by the same delta; the
    # Hessian of the KL in delta at 0 is the sum over tasks of their Fisher matrices.
    config, policy, batch = small_batch("reinforce")
    meta = detach_params(params_of(policy))
    adapted = detach_params(adapt_policy(policy, require_grad(meta), batch.train, config))
    old = call(policy, adapted, batch.valid.obs)
    delta = torch.zeros(flatten(meta).numel(), dtype=torch.float64)
    shifted = lambda d: {k: adapted[k] + x for k, x in unflatten(d, meta).items()}
    kl = lambda d: mean_kl(old, call(policy, shifted(d), batch.valid.obs), batch.valid.mask)
    brute = hessian_product(kl, delta)
    fast = adapted_fisher_product(policy, meta, adapted, batch.valid, old)
    v = torch.randn(delta.numel(), generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    torch.testing.assert_close(fast(v), brute(v), rtol=1e-7, atol=1e-10)


def test_adapted_fisher_product_is_exact_for_first_order_maml():
    config, policy, batch = small_batch("reinforce", first_order=True)
    meta = detach_params(params_of(policy))
    adapted = detach_params(adapt_policy(policy, require_grad(meta), batch.train, config))
    old = call(policy, adapted, batch.valid.obs)
    exact = autograd_product(policy, meta, batch.train, inner_loss("reinforce"),
                             config.inner_lr, True, batch.valid, old)
    fast = adapted_fisher_product(policy, meta, adapted, batch.valid, old)
    v = torch.randn(flatten(meta).numel(), generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    torch.testing.assert_close(fast(v), exact(v), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("first_order", [False, True])
def test_subsampled_fisher_product_is_taken_where_the_adaptation_went(first_order):
    # fisher_fraction < 1: inner Hessians on half of the episodes, but at the points
    # p_k of the adaptation on all of them. Brute force: the chain
    #   phi_{k+1} = phi_k - lr * (g_half(phi_k) - g_half(p_k) + g_full(p_k))
    # equals p_k at the meta-parameters and has the half-episode Jacobian, so the
    # Hessian of KL(pi_{p_K} || pi_{phi_K}) there is J_half^T F(p_K) J_half.
    config, policy, batch = small_batch("reinforce", first_order)
    meta = detach_params(params_of(policy))
    loss, lr = inner_loss("reinforce"), config.inner_lr
    half = [(subsample_episodes(e, 0.5), a[:, :2]) for e, a in batch.train]
    points = inner_iterates(policy, meta, batch.train, loss, lr, num_tasks=3)
    old = call(policy, points[-1], batch.valid.obs)

    def inner_grads(params, episodes, adv, create_graph):
        grads = torch.autograd.grad(loss(policy, params, episodes, adv), list(params.values()),
                                    create_graph=create_graph)
        return dict(zip(params, grads))

    def chain(flat):
        phi = expand_params(unflatten(flat, meta), 3)
        for (part, part_adv), (full, full_adv), p in zip(half, batch.train, points):
            p = {k: v.clone().requires_grad_() for k, v in p.items()}
            at_p = inner_grads(p, part, part_adv, False)
            full_at_p = inner_grads(p, full, full_adv, False)
            moving = inner_grads(phi, part, part_adv, True) if not first_order else at_p
            phi = {k: phi[k] - lr * (moving[k] - at_p[k] + full_at_p[k]) for k in phi}
        return phi

    flat = flatten(meta)
    kl = lambda f: mean_kl(old, call(policy, chain(f), batch.valid.obs), batch.valid.mask)
    brute = hessian_product(kl, flat)
    fast = autograd_product(policy, meta, half, loss, lr, first_order, batch.valid, old, points)
    at_half_points = autograd_product(policy, meta, half, loss, lr, first_order, batch.valid, old)
    v = torch.randn(flat.numel(), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(fast(v), brute(v), rtol=1e-7, atol=1e-10)
    # Taken where the half-episode adaptation went, it is another matrix.
    assert (at_half_points(v) - brute(v)).norm() > 1e-3 * brute(v).norm()


def test_subsample_keeps_the_first_episodes_of_every_task():
    _, _, batch = small_batch()
    part = subsample_episodes(batch.valid, 0.3)  # ceil(0.3 * 4) = 2 of 4 episodes
    assert part.obs.shape[:3] == (3, 2, 12)
    torch.testing.assert_close(part.rewards, batch.valid.rewards[:, :2])
    assert subsample_episodes(batch.valid, 1.0).obs.shape == batch.valid.obs.shape
    with pytest.raises(ValueError, match="fraction"):
        subsample_episodes(batch.valid, 0.0)


@pytest.mark.parametrize("overrides", [
    [], ["fisher_backend=autograd"], ["fisher=autograd"], ["fisher=adapted"],
    ["cg_preconditioner=kfac", "cg_iters=5"], ["first_order=true"],
    ["inner_objective=dice", "fisher_fraction=0.5"]])
def test_meta_update_improves_the_surrogate_within_the_kl_bound(overrides):
    from metarl.rl.maml_trpo import meta_update

    config = load_config(data={"kind": "rl"}, overrides=[
        "meta_batch_size=4", "episodes_per_task=6", "horizon=20", "hidden_sizes=[16, 16]",
        "max_kl=0.01", *overrides])
    family = Navigation2DFamily(max_episode_steps=config.horizon)
    env = family.make_vector_env(family.sample_tasks(np.random.default_rng(3), 4), 6)
    torch.manual_seed(0)
    policy = GaussianPolicy(2, 2, (16, 16))
    batch, _ = sample_meta_batch(env, policy, config, [5, 6], torch.Generator().manual_seed(0))
    before = {k: v.detach().clone() for k, v in params_of(policy).items()}
    surrogate_at = lambda params: surrogate_loss(
        policy, adapt_policy(policy, require_grad(params), batch.train, config), batch.valid,
        batch.valid_advantages, batch.valid_log_probs).item()
    stats = meta_update(policy, batch, config)
    after = {k: v.detach().clone() for k, v in params_of(policy).items()}
    assert stats["trpo/accepted"] == 1.0
    assert surrogate_at(after) < surrogate_at(before)
    assert stats["surrogate/after"] == pytest.approx(surrogate_at(after), rel=1e-4, abs=1e-6)
    old = call(policy, batch.valid_params, batch.valid.obs)
    adapted = adapt_policy(policy, require_grad(after), batch.train, config)
    kl = mean_kl(old, call(policy, adapted, batch.valid.obs), batch.valid.mask).item()
    assert 0 < kl <= config.max_kl
    assert stats["trpo/kl"] == pytest.approx(kl, rel=1e-4)
