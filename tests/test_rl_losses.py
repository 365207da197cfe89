"""Policy-gradient estimators, checked by exact enumeration of all outcomes (float64)."""

import itertools

import pytest
import torch
from torch.nn.functional import one_hot

from metarl.functional import call, detach_params, expand_params, flatten, params_of, unflatten
from metarl.meta.adapt import adapt
from metarl.models import CategoricalPolicy, GaussianPolicy
from metarl.rl.episodes import Episodes
from metarl.rl.losses import (
    dice_loss,
    inner_loss,
    log_probs,
    lvc_loss,
    magic_box,
    mean_kl,
    reinforce_loss,
    surrogate_loss,
)

INNER = {"reinforce": reinforce_loss, "lvc": lvc_loss, "dice": dice_loss}
T, E, H = 3, 2, 4


def gaussian_setup(seed=0):
    """Gaussian policy, per-task parameters and episodes with early terminations."""
    torch.manual_seed(seed)
    policy = GaussianPolicy(3, 2, hidden=(5,)).double()
    params = {k: (v + 0.1 * torch.randn_like(v)).requires_grad_()
              for k, v in expand_params(detach_params(params_of(policy)), T).items()}
    lengths = torch.tensor([[4, 1], [2, 3], [4, 4]])
    mask = (torch.arange(H) < lengths.unsqueeze(-1)).double()
    episodes = Episodes(obs=torch.randn(T, E, H, 3, dtype=torch.float64),
                        actions=torch.randn(T, E, H, 2, dtype=torch.float64),
                        rewards=torch.randn(T, E, H, dtype=torch.float64), mask=mask)
    advantages = torch.randn(T, E, H, dtype=torch.float64) * mask
    return policy, params, episodes, advantages


def grads(loss, params):
    return torch.autograd.grad(loss, list(params.values()))


def assert_all_close(actual, expected):
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


def test_inner_losses_share_the_policy_gradient():
    policy, params, episodes, advantages = gaussian_setup()
    expected = grads(reinforce_loss(policy, params, episodes, advantages), params)
    for name in ["lvc", "dice"]:
        assert_all_close(grads(inner_loss(name)(policy, params, episodes, advantages), params),
                         expected)
    steps = episodes.mask.sum(dim=(1, 2))
    torch.testing.assert_close(lvc_loss(policy, params, episodes, advantages),
                               -(advantages.sum(dim=(1, 2)) / steps).sum())
    torch.testing.assert_close(dice_loss(policy, params, episodes, advantages),
                               -(advantages[:, :, 0].sum(dim=1) / steps).sum())


@pytest.mark.parametrize("name", sorted(INNER))
def test_inner_losses_give_each_task_its_own_gradient(name):
    policy, params, episodes, advantages = gaussian_setup(1)
    stacked = grads(INNER[name](policy, params, episodes, advantages), params)
    for t in range(T):
        one = Episodes(*(x[t : t + 1] for x in (episodes.obs, episodes.actions,
                                                 episodes.rewards, episodes.mask)))
        task_params = {k: v[t : t + 1] for k, v in params.items()}
        alone = grads(INNER[name](policy, task_params, one, advantages[t : t + 1]), params)
        assert_all_close([g[t] for g in stacked], [a[t] for a in alone])


def test_surrogate_and_kl_at_the_old_policy():
    policy, params, episodes, advantages = gaussian_setup(2)
    old_logp = log_probs(policy, params, episodes).detach()
    loss = surrogate_loss(policy, params, episodes, advantages, old_logp)
    steps = episodes.mask.sum(dim=(1, 2))
    torch.testing.assert_close(loss, -(advantages.sum(dim=(1, 2)) / steps).mean())
    reinforce = reinforce_loss(policy, params, episodes, advantages)
    assert_all_close(grads(loss, params), grads(reinforce / T, params))

    old = call(policy, detach_params(params), episodes.obs)
    kl = mean_kl(old, call(policy, params, episodes.obs), episodes.mask)
    assert abs(kl.item()) < 1e-12
    assert max(g.abs().max().item() for g in grads(kl, params)) < 1e-12


def test_mean_kl_averages_valid_steps_per_task():
    policy, params, episodes, _ = gaussian_setup(3)
    moved = {k: v.detach() + 0.3 * torch.randn_like(v) for k, v in params.items()}
    old = call(policy, detach_params(params), episodes.obs)
    new = call(policy, moved, episodes.obs)
    kl = mean_kl(old, new, episodes.mask)
    m1, s1, m2, s2 = old.base_dist.loc, old.base_dist.scale, new.base_dist.loc, new.base_dist.scale
    per_step = (torch.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5).sum(-1)
    per_task = [per_step[t][episodes.mask[t] > 0].mean() for t in range(T)]
    torch.testing.assert_close(kl, torch.stack(per_task).mean())


def test_selector_and_argument_checks():
    assert inner_loss("dice") is dice_loss
    with pytest.raises(ValueError, match="inner_objective"):
        inner_loss("ppo")
    policy, params, episodes, advantages = gaussian_setup()
    with pytest.raises(ValueError, match="advantages"):
        reinforce_loss(policy, params, episodes, advantages[..., :-1])
    with pytest.raises(ValueError, match="old_log_probs"):
        surrogate_loss(policy, params, episodes, advantages, advantages[0])


# Exact enumeration. Outcomes are stacked as "tasks", so one loss call covers all of
# them; weighting the advantages of outcome k by its (constant) probability p_k turns
# the sum over tasks into an expectation: E[loss] = loss(A * p), and so for derivatives.

BANDIT_REWARDS = torch.tensor([1.0, 0.0], dtype=torch.float64)
PULLS = 3


def bandit():
    """Softmax over 2 arms; the logits are the bias of a linear layer fed obs = 0."""
    policy = CategoricalPolicy(1, 2, hidden=()).double()
    with torch.no_grad():
        policy.logits.layers[0].bias.copy_(torch.tensor([0.3, -0.2]))
    outcomes = torch.tensor(list(itertools.product([0, 1], repeat=PULLS)))  # (2^N, N)
    k = len(outcomes)
    episodes = Episodes(obs=torch.zeros(k, PULLS, 1, 1, dtype=torch.float64),
                        actions=outcomes.unsqueeze(-1),  # N one-step episodes per outcome
                        rewards=BANDIT_REWARDS[outcomes].unsqueeze(-1),
                        mask=torch.ones(k, PULLS, 1, dtype=torch.float64))
    return policy, episodes


def expected_hessian(loss_fn, policy, episodes, advantages, outcome_probs):
    """E[hessian of the estimator's objective -loss * steps], by enumeration."""
    params = params_of(policy)
    steps = episodes.mask[0].sum()
    weighted = advantages * outcome_probs.detach().view(-1, 1, 1)
    objective = lambda flat: -loss_fn(policy, unflatten(flat, params), episodes, weighted) * steps
    return torch.autograd.functional.hessian(objective, flatten(params).detach())


def exact_hessian(expected_return, policy):
    params = params_of(policy)
    return torch.autograd.functional.hessian(lambda f: expected_return(unflatten(f, params)),
                                             flatten(params).detach())


def test_curvature_of_the_estimators_on_a_bandit():
    """E[hessian] vs the Hessian of the expected reward of N pulls: DiCE and LVC are
    unbiased, REINFORCE misses E[r grad log pi grad log pi^T]."""
    policy, episodes = bandit()
    probs = log_probs(policy, params_of(policy), episodes).sum(dim=(1, 2)).exp()
    expected_reward = lambda p: PULLS * (call(policy, p, episodes.obs[0, 0]).probs
                                         * BANDIT_REWARDS).sum()
    exact = exact_hessian(expected_reward, policy)
    assert exact.abs().max() > 0.05
    for name, loss_fn in INNER.items():
        estimate = expected_hessian(loss_fn, policy, episodes, episodes.rewards, probs)
        if name == "reinforce":
            assert (estimate - exact).abs().max() > 0.1  # measured: 0.27
        else:
            torch.testing.assert_close(estimate, exact, rtol=0, atol=1e-12)


def two_step_mdp():
    """State 0 -> action a0 -> state 1 + a0 -> action a1. Tabular logits (one-hot obs).

    One episode of 2 steps per outcome (a0, a1); 4 outcomes.
    """
    torch.manual_seed(0)
    policy = CategoricalPolicy(3, 2, hidden=()).double()
    rewards_table = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
    outcomes = torch.tensor(list(itertools.product([0, 1], repeat=2)))  # (4, 2)
    states = torch.stack([torch.zeros(4, dtype=torch.long), 1 + outcomes[:, 0]], dim=1)
    rewards = rewards_table[states, outcomes]
    episodes = Episodes(obs=one_hot(states, 3).double().unsqueeze(1),
                        actions=outcomes.unsqueeze(1), rewards=rewards.unsqueeze(1),
                        mask=torch.ones(4, 1, 2, dtype=torch.float64))
    return policy, episodes, states


def test_curvature_of_the_estimators_on_a_two_step_mdp():
    """DiCE is unbiased, with or without a state baseline (Mao et al.); LVC drops the
    products of score functions across steps, which do not vanish when the second
    state depends on the first action: it is biased here, as is REINFORCE."""
    policy, episodes, states = two_step_mdp()
    probs = log_probs(policy, params_of(policy), episodes).sum(dim=(1, 2)).exp()
    episode_return = episodes.rewards.sum(dim=(1, 2))
    expected_return = lambda p: (log_probs(policy, p, episodes).sum(dim=(1, 2)).exp()
                                 * episode_return).sum()
    exact = exact_hessian(expected_return, policy)
    returns_to_go = episodes.rewards.flip(-1).cumsum(-1).flip(-1)
    state_baseline = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64)[states].unsqueeze(1)
    for advantages in [returns_to_go, returns_to_go - state_baseline]:
        dice = expected_hessian(dice_loss, policy, episodes, advantages, probs)
        torch.testing.assert_close(dice, exact, rtol=0, atol=1e-12)
    for loss_fn in [lvc_loss, reinforce_loss]:
        estimate = expected_hessian(loss_fn, policy, episodes, returns_to_go, probs)
        assert (estimate - exact).abs().max() > 0.1  # measured: LVC 0.39, REINFORCE 0.18


def bandit_meta_gradients(alpha):
    """J(theta) = E_{pulls ~ pi_theta}[ sum_a pi_theta'(a) r(a) ], theta' one inner
    policy-gradient step on the pulls. Returns (exact gradient, {estimator: E[meta-grad]})."""
    policy, episodes = bandit()
    params = params_of(policy)
    logits = params["logits.layers.0.bias"]
    outcomes = episodes.actions.squeeze(-1)
    log_pulls = log_probs(policy, params, episodes).sum(dim=(1, 2))  # log p(pulls)
    probs = log_pulls.exp()
    post_reward = lambda adapted_logits: (adapted_logits.softmax(-1) * BANDIT_REWARDS).sum(-1)

    # Exact: the inner step in closed form, grad log softmax(a) = onehot(a) - pi.
    pi = logits.softmax(-1)
    scores = one_hot(outcomes, 2) - pi
    adapted = logits + alpha / PULLS * (BANDIT_REWARDS[outcomes].unsqueeze(-1) * scores).sum(1)
    (exact,) = torch.autograd.grad((probs * post_reward(adapted)).sum(), logits,
                                   retain_graph=True)

    estimates = {}
    for name, loss_fn in INNER.items():
        inner = lambda p, ep, loss_fn=loss_fn: loss_fn(policy, p, ep, ep.rewards)
        adapted = adapt(inner, expand_params(params, len(outcomes)), episodes, lr=alpha)
        reward = post_reward(adapted["logits.layers.0.bias"])
        (estimates[name],) = torch.autograd.grad((probs.detach() * reward).sum(), logits,
                                                 retain_graph=True)
        if name == "reinforce":  # plus DiCE on the outer objective: the score of the pulls
            (estimates["reinforce+outer_box"],) = torch.autograd.grad(
                (probs.detach() * magic_box(log_pulls) * reward).sum(), logits)
    return exact, estimates


def test_meta_gradients_on_a_bandit():
    """The truth, by exact enumeration:

    - REINFORCE inner step: misses E[grad log p(pulls) * J_outcome]; off by O(alpha).
    - REINFORCE inner step + magic box of the pulls' log-probability on the outer
      objective (DiCE of the whole meta-objective, = E-MAML): exact.
    - DiCE or LVC inner step (identical for one-step episodes): their unbiased
      curvature supplies that term only to first order in alpha (the post-adaptation
      reward is not linear in theta'): off by O(alpha^2), not exact.
    """
    errors = {}
    for alpha in [1.0, 0.5]:
        exact, estimates = bandit_meta_gradients(alpha)
        torch.testing.assert_close(estimates["reinforce+outer_box"], exact, rtol=0, atol=1e-13)
        torch.testing.assert_close(estimates["dice"], estimates["lvc"], rtol=0, atol=1e-13)
        errors[alpha] = {k: (v - exact).norm().item() for k, v in estimates.items()}
        assert errors[alpha]["dice"] < 0.1 * errors[alpha]["reinforce"]
        if alpha == 1.0:
            assert errors[alpha]["reinforce"] > 0.15 * exact.norm()  # about 20 %
    assert 1.6 < errors[1.0]["reinforce"] / errors[0.5]["reinforce"] < 2.4  # O(alpha)
    assert 3.5 < errors[1.0]["dice"] / errors[0.5]["dice"] < 5.5  # O(alpha^2)
