import pytest
import torch

from metarl.functional import call, detach_params, expand_params, flatten, params_of, unflatten
from metarl.meta.adapt import adapt
from metarl.models import GaussianPolicy
from metarl.rl.episodes import Episodes
from metarl.rl.fisher import third_order_product
from metarl.rl.losses import log_probs, mean_kl, reinforce_loss, surrogate_loss
from metarl.rl.trpo import conjugate_gradient, natural_gradient_step, trpo_step

T, E, H = 2, 3, 4


def setup(seed=0):
    """Tiny Gaussian policy and a batch of episodes (float64), with early terminations."""
    torch.manual_seed(seed)
    policy = GaussianPolicy(2, 2, hidden=(3,)).double()
    mask = (torch.arange(H) < torch.tensor([[4, 2, 1], [3, 4, 4]]).unsqueeze(-1)).double()
    episodes = Episodes(obs=torch.randn(T, E, H, 2, dtype=torch.float64),
                        actions=torch.randn(T, E, H, 2, dtype=torch.float64),
                        rewards=torch.randn(T, E, H, dtype=torch.float64), mask=mask)
    advantages = torch.randn(T, E, H, dtype=torch.float64) * mask
    return policy, episodes, advantages


def test_conjugate_gradient_solves_spd_system():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(10, 10, generator=g, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(10, dtype=torch.float64)
    b = torch.randn(10, generator=g, dtype=torch.float64)
    x, _ = conjugate_gradient(lambda v: a @ v, b, iters=30, residual_tol=1e-24)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-8, atol=1e-10)
    zero, _ = conjugate_gradient(lambda v: a @ v, torch.zeros(10, dtype=torch.float64))
    assert (zero == 0).all()
    with pytest.raises(ValueError, match="flat"):
        conjugate_gradient(lambda v: v, torch.zeros(2, 2))


@pytest.mark.parametrize("iters", [1, 3, 10])
def test_conjugate_gradient_residual_gives_the_product_without_another(iters):
    # TRPO scales its step with x^T A x = x^T (b - r); r must be b - A x at any stage,
    # not only at convergence (10 iterations stop short on a 10 000-parameter policy).
    g = torch.Generator().manual_seed(1)
    m = torch.randn(40, 40, generator=g, dtype=torch.float64)
    a = m @ m.T + 0.1 * torch.eye(40, dtype=torch.float64)
    b = torch.randn(40, generator=g, dtype=torch.float64)
    x, residual = conjugate_gradient(lambda v: a @ v, b, iters=iters)
    torch.testing.assert_close(residual, b - a @ x, rtol=1e-9, atol=1e-9)
    assert residual.norm() > 1e-3  # unconverged: the identity is not trivially r = 0
    torch.testing.assert_close(x @ (b - residual), x @ a @ x)


def kl_at(policy, episodes, old_params, adapt_with=None):
    """flat meta-parameters -> mean KL(old policy || policy at them), optionally through
    one inner REINFORCE step per task (as MAML-TRPO)."""
    old = call(policy, detach_params(old_params), episodes.obs)
    like = params_of(policy)

    def kl(flat):
        params = unflatten(flat, like)
        if adapt_with is not None:
            params = adapt(adapt_with, expand_params(params, T), episodes, lr=0.5)
        return mean_kl(old, call(policy, params, episodes.obs), episodes.mask)

    return kl


@pytest.mark.parametrize("through_adaptation", [False, True])
def test_fisher_vector_product_equals_explicit_hessian(through_adaptation):
    policy, episodes, advantages = setup()
    inner = None
    if through_adaptation:
        inner = lambda p, ep: reinforce_loss(policy, p, ep, advantages)
    start = flatten(params_of(policy)).detach()
    old_params = unflatten(start.clone().requires_grad_(), params_of(policy))
    if through_adaptation:
        old_params = adapt(inner, expand_params(old_params, T), episodes, lr=0.5)
    kl = kl_at(policy, episodes, old_params, inner)

    hessian = torch.autograd.functional.hessian(kl, start)
    fvp = third_order_product(lambda p: kl(p["flat"]), {"flat": start})
    v = torch.randn_like(start)
    torch.testing.assert_close(fvp(v), hessian @ v, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(fvp(2 * v), 2 * (hessian @ v), rtol=1e-8, atol=1e-10)
    # The KL's Hessian at its minimum is a Fisher matrix: symmetric positive semi-definite.
    assert torch.linalg.eigvalsh(hessian).min() > -1e-10


def surrogate_closures(policy, episodes, advantages, through_adaptation=False):
    """loss_fn, kl_fn for trpo_step, at the policy's current parameters."""
    inner = lambda p, ep: reinforce_loss(policy, p, ep, advantages)

    def policy_params(params):
        if not through_adaptation:
            return params
        return adapt(inner, expand_params(params, T), episodes, lr=0.5)

    old = detach_params(policy_params(params_of(policy)))
    old_logp = log_probs(policy, old, episodes).detach()
    old_dist = call(policy, old, episodes.obs)
    loss_fn = lambda p: surrogate_loss(policy, policy_params(p), episodes, advantages, old_logp)
    kl_fn = lambda p: mean_kl(old_dist, call(policy, policy_params(p), episodes.obs),
                              episodes.mask)
    return loss_fn, kl_fn


def trpo(params, loss_fn, kl_fn, **kwargs):
    """trpo_step with the third-order product of kl_fn and a line search on both closures."""
    def evaluate(p):  # the closures may differentiate through an inner step: give leaves
        p = {k: v.detach().requires_grad_() for k, v in p.items()}
        return loss_fn(p).item(), kl_fn(p).item()

    return trpo_step(params, loss_fn, third_order_product(kl_fn, params), evaluate, **kwargs)


def test_preconditioned_conjugate_gradient_converges_faster_with_a_good_preconditioner():
    g = torch.Generator().manual_seed(3)
    scales = torch.logspace(-3, 2, 60, dtype=torch.float64).sqrt()
    m = torch.randn(60, 60, generator=g, dtype=torch.float64) / 60
    core = torch.eye(60, dtype=torch.float64) + m @ m.T  # well conditioned
    a = scales[:, None] * core * scales[None, :]  # badly scaled: condition number ~1e5
    b = torch.randn(60, generator=g, dtype=torch.float64)
    exact = torch.linalg.solve(a, b)
    plain, _ = conjugate_gradient(lambda v: a @ v, b, iters=10)
    jacobi, residual = conjugate_gradient(lambda v: a @ v, b, iters=10,
                                          preconditioner=lambda v: v / a.diagonal())
    torch.testing.assert_close(residual, b - a @ jacobi, rtol=1e-9, atol=1e-9)
    assert (jacobi - exact).norm() < 0.5 * (plain - exact).norm()
    solved, _ = conjugate_gradient(lambda v: a @ v, b, iters=60, residual_tol=1e-28,
                                   preconditioner=lambda v: v / a.diagonal())
    torch.testing.assert_close(solved, exact, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("through_adaptation", [False, True])
def test_trpo_step_improves_within_the_kl_bound(through_adaptation):
    policy, episodes, advantages = setup(1)
    before = {k: v.detach().clone() for k, v in params_of(policy).items()}
    loss_fn, kl_fn = surrogate_closures(policy, episodes, advantages, through_adaptation)
    max_kl = 1e-2
    new, info = trpo(params_of(policy), loss_fn, kl_fn, max_kl=max_kl, damping=1e-5)
    assert info["accepted"] and info["improvement"] > 0
    assert 0 < info["kl"] <= max_kl
    assert info["expected_improvement"] > 0
    leaf = lambda params: {k: v.clone().requires_grad_() for k, v in params.items()}
    assert loss_fn(leaf(new)).item() == pytest.approx(info["loss_after"])
    assert loss_fn(leaf(new)) < loss_fn(leaf(before))
    assert kl_fn(leaf(new)).item() <= max_kl
    assert any(not torch.equal(new[k], before[k]) for k in before)
    for k, v in params_of(policy).items():  # the module is left alone
        assert torch.equal(v, before[k])


def test_line_search_rejects_nan_and_restores():
    policy, episodes, advantages = setup(2)
    loss_fn, kl_fn = surrogate_closures(policy, episodes, advantages)
    start = flatten(params_of(policy)).detach()

    def nan_away_from_start(params):
        loss = loss_fn(params)
        moved = not torch.equal(flatten(params).detach(), start)
        return loss + float("nan") if moved else loss

    new, info = trpo(params_of(policy), nan_away_from_start, kl_fn, max_kl=1e-2,
                          max_backtracks=4)
    assert not info["accepted"] and info["backtracks"] == 4
    torch.testing.assert_close(flatten(new), start, rtol=0, atol=0)


def test_zero_gradient_takes_no_step():
    policy, episodes, advantages = setup(3)
    _, kl_fn = surrogate_closures(policy, episodes, advantages)
    constant = lambda p: 0.0 * flatten(p).sum()
    new, info = trpo(params_of(policy), constant, kl_fn, max_kl=1e-2)
    assert not info["accepted"] and info["backtracks"] == 0
    torch.testing.assert_close(flatten(new), flatten(params_of(policy)).detach())


def test_argument_checks():
    policy, episodes, advantages = setup()
    loss_fn, kl_fn = surrogate_closures(policy, episodes, advantages)
    with pytest.raises(ValueError, match="max_kl"):
        trpo(params_of(policy), loss_fn, kl_fn, max_kl=0.0)
    with pytest.raises(ValueError, match="backtrack_ratio"):
        trpo(params_of(policy), loss_fn, kl_fn, max_kl=0.01, backtrack_ratio=1.0)
    with pytest.raises(ValueError, match="damping"):
        natural_gradient_step(torch.ones(2), lambda v: v, 0.01, damping=-1.0, cg_iters=3)


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1e3, 1e6])
def test_trpo_step_does_not_depend_on_the_loss_scale(scale):
    # An absolute CG tolerance stopped after one iteration at 1e-5 and took no step
    # at 1e-6; the step of a scaled loss must be the same step.
    policy, episodes, advantages = setup(4)
    loss_fn, kl_fn = surrogate_closures(policy, episodes, advantages, through_adaptation=True)
    reference, info = trpo(params_of(policy), loss_fn, kl_fn, max_kl=1e-2, cg_iters=10)
    scaled, scaled_info = trpo(params_of(policy), lambda p: scale * loss_fn(p), kl_fn,
                               max_kl=1e-2, cg_iters=10)
    assert info["accepted"] and scaled_info["accepted"]
    assert scaled_info["backtracks"] == info["backtracks"]
    torch.testing.assert_close(flatten(scaled), flatten(reference), rtol=1e-7, atol=1e-10)
