"""The structured curvature products (rl.mlp_fisher) against autograd references."""

import numpy as np
import pytest
import torch

from envs.navigation import Navigation2DFamily
from metarl.config import load_config
from metarl.functional import call, detach_params, expand_params, flatten, params_of, unflatten
from metarl.models import MLP, CategoricalPolicy, GaussianPolicy
from metarl.rl import episode_slices, mlp_fisher
from metarl.rl.adaptation import adapt_through, inner_iterates
from metarl.rl.episodes import Episodes
from metarl.rl.fisher import (
    StructuredCurvature,
    make_fisher_product,
    subsample_episodes,
    third_order_product,
)
from metarl.rl.losses import inner_loss, log_probs, mean_kl, surrogate_loss
from metarl.rl.mlp_fisher import Buffers, InnerHessian, PolicyFisher, mlp_layout
from metarl.rl.trpo import flat_gradient

T, E, H = 3, 4, 6


def synthetic_batch(policy, steps, discrete, seed=0):
    """Random episodes with early terminations (mask), float64: ``steps`` train batches
    and a validation batch, each with advantages."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, H + 1, (T, E), generator=g)
    mask = (torch.arange(H) < lengths.unsqueeze(-1)).double()

    def episodes():
        obs = torch.randn(T, E, H, 3, generator=g, dtype=torch.float64)
        actions = (torch.randint(0, 4, (T, E, H), generator=g) if discrete
                   else torch.randn(T, E, H, 2, generator=g, dtype=torch.float64))
        return (Episodes(obs, actions, torch.zeros(T, E, H, dtype=torch.float64), mask),
                torch.randn(T, E, H, generator=g, dtype=torch.float64) * mask)

    return [episodes() for _ in range(steps)], episodes()[0]


def make_policy(discrete, activation, seed=0):
    torch.manual_seed(seed)
    if discrete:
        return CategoricalPolicy(3, 4, (5, 4), activation).double()
    return GaussianPolicy(3, 2, (5, 4), activation, init_std=0.7).double()


def brute_force(policy, meta, train, valid, objective, lr, first_order):
    """Third order: the Hessian of the KL through the re-adaptation, at meta."""
    loss = inner_loss(objective)
    old = call(policy, inner_iterates(policy, meta, train, loss, lr, T)[-1], valid.obs)
    kl = lambda p: mean_kl(old, call(policy, adapt_through(policy, p, train, loss, lr,
                                                           first_order, T), valid.obs),
                           valid.mask)
    return third_order_product(kl, meta)


def random_vectors(meta, count=2):
    n = flatten(meta).numel()
    return [torch.randn(n, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
            for s in range(count)]


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("objective", ["reinforce", "lvc", "dice"])
def test_inner_hessian_is_the_inner_loss_hessian(discrete, activation, objective):
    policy = make_policy(discrete, activation)
    train, _ = synthetic_batch(policy, 1, discrete)
    episodes, adv = train[0]
    params = expand_params(detach_params(params_of(policy)), T)
    params = {k: v + 0.1 * torch.randn_like(v) for k, v in params.items()}  # per-task points
    hessian = InnerHessian(mlp_layout(policy), params, episodes, adv, objective, Buffers())
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    grads = torch.autograd.grad(inner_loss(objective)(policy, leaves, episodes, adv),
                                list(leaves.values()), create_graph=True)
    vector = {k: torch.randn_like(v) for k, v in params.items()}
    expected = torch.autograd.grad(grads, list(leaves.values()), list(vector.values()))
    got = hessian(vector)
    for name, want in zip(leaves, expected):
        torch.testing.assert_close(got[name], want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_policy_fisher_is_the_kl_hessian(discrete, activation):
    policy = make_policy(discrete, activation)
    _, valid = synthetic_batch(policy, 0, discrete)
    params = expand_params(detach_params(params_of(policy)), T)
    params = {k: v + 0.1 * torch.randn_like(v) for k, v in params.items()}
    old = call(policy, params, valid.obs)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    grads = torch.autograd.grad(mean_kl(old, call(policy, leaves, valid.obs), valid.mask),
                                list(leaves.values()), create_graph=True)
    vector = {k: torch.randn_like(v) for k, v in params.items()}
    expected = torch.autograd.grad(grads, list(leaves.values()), list(vector.values()))
    got = PolicyFisher(mlp_layout(policy), params, valid, Buffers())(vector)
    for name, want in zip(leaves, expected):
        torch.testing.assert_close(got[name], want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("objective", ["reinforce", "lvc", "dice"])
def test_products_summed_over_episode_slices_equal_the_whole_batch(discrete, objective):
    policy = make_policy(discrete, "tanh")
    train, valid = synthetic_batch(policy, 1, discrete)
    episodes, adv = train[0]
    layout = mlp_layout(policy)
    params = expand_params(detach_params(params_of(policy)), T)
    params = {k: v + 0.1 * torch.randn_like(v) for k, v in params.items()}
    vector = {k: torch.randn_like(v) for k, v in params.items()}
    whole_hessian = InnerHessian(layout, params, episodes, adv, objective, Buffers())
    whole_fisher = PolicyFisher(layout, params, valid, Buffers())
    buffers = Buffers()  # shared by the slices, as in rl.fisher
    count = mlp_fisher.valid_steps
    for tasks, per in [(T, 1), (T, 3), (1, 1), (2, 3)]:  # of every task, and a few tasks each
        steps, task_steps = tasks * per * H, per * H
        parts = episode_slices.batch_slices(episodes, steps, task_steps)
        assert len(parts) == -(-T // tasks) * -(-E // per)
        hessian = episode_slices.SlicedProduct(episodes, lambda part, where: InnerHessian(
            layout, episode_slices.take_tasks(params, where.tasks), part,
            adv[where.tasks, where.episodes], objective, buffers,
            count(episodes.mask)[where.tasks]), steps, task_steps)
        fisher = episode_slices.SlicedProduct(valid, lambda part, where: PolicyFisher(
            layout, episode_slices.take_tasks(params, where.tasks), part, buffers,
            count(valid.mask)[where.tasks], T), steps, task_steps)
        for got, want in [(hessian(vector), whole_hessian(vector)),
                          (fisher(vector), whole_fisher(vector)),
                          (fisher.surrogate_gradient(adv), whole_fisher.surrogate_gradient(adv))]:
            assert got.keys() == want.keys()
            for name in want:
                torch.testing.assert_close(got[name], want[name], rtol=1e-10, atol=1e-13)


def test_batch_slices_cover_every_task_episode_once():
    mask = torch.ones(5, 7, 10)
    episodes = Episodes(obs=mask[..., None], actions=mask[..., None], rewards=mask, mask=mask)
    for steps, task_steps in [(1, 1), (40, 20), (200, 1000), (10**6, 10**6), (60, 30)]:
        seen = torch.zeros(5, 7)
        for part in episode_slices.batch_slices(episodes, steps, task_steps):
            seen[part.tasks, part.episodes] += 1
        assert bool((seen == 1).all())


@pytest.mark.parametrize("discrete,activation,objective,steps,first_order", [
    (False, "tanh", "reinforce", 1, False), (False, "relu", "reinforce", 2, False),
    (False, "tanh", "lvc", 3, False), (False, "relu", "dice", 2, False),
    (False, "tanh", "reinforce", 2, True), (True, "tanh", "reinforce", 2, False),
    (True, "relu", "dice", 1, False), (True, "relu", "lvc", 2, True)])
@pytest.mark.parametrize("slicing", [None, (T, 1), (T, 3), (2, 3)])  # tasks, episodes
def test_structured_product_equals_the_third_order_product(discrete, activation, objective,
                                                           steps, first_order, slicing,
                                                           monkeypatch):
    if slicing is not None:  # else all tasks and episodes in one slice
        tasks, episodes = slicing
        monkeypatch.setattr(episode_slices, "SLICE_STEPS", tasks * episodes * H)
        monkeypatch.setattr(episode_slices, "TASK_STEPS", episodes * H)
    policy = make_policy(discrete, activation)
    train, valid = synthetic_batch(policy, steps, discrete)
    meta = detach_params(params_of(policy))
    lr = 0.3
    iterates = inner_iterates(policy, meta, train, inner_loss(objective), lr, T)
    fast = StructuredCurvature(mlp_layout(policy), meta, train, iterates, valid, objective, lr,
                               first_order).product
    brute = brute_force(policy, meta, train, valid, objective, lr, first_order)
    for v in random_vectors(meta):
        torch.testing.assert_close(fast(v), brute(v), rtol=1e-8, atol=1e-11)
    fast(random_vectors(meta)[0])  # buffers reused: a second round gives the same values
    torch.testing.assert_close(fast(random_vectors(meta)[1]), brute(random_vectors(meta)[1]),
                               rtol=1e-8, atol=1e-11)


def navigation_batch(overrides):
    config = load_config(data={"kind": "rl"}, overrides=[
        "meta_batch_size=3", "episodes_per_task=4", "horizon=12", "hidden_sizes=[6, 5]",
        "inner_steps=2", "inner_lr=0.5", *overrides])
    from metarl.rl.maml_trpo import sample_meta_batch
    family = Navigation2DFamily(max_episode_steps=config.horizon)
    env = family.make_vector_env(family.sample_tasks(np.random.default_rng(0), 3), 4)
    torch.manual_seed(0)
    policy = GaussianPolicy(2, 2, (6, 5), config.activation)
    batch, _ = sample_meta_batch(env, policy, config, [1, 2, 3], torch.Generator().manual_seed(0))
    policy.double()
    batch.train = [(e.double(), a.double()) for e, a in batch.train]
    batch.iterates = [{k: v.double() for k, v in p.items()} for p in batch.iterates]
    return config, policy, batch, batch.valid.double()


@pytest.mark.parametrize("overrides", [
    [], ["fisher_fraction=0.5"], ["fisher=adapted"], ["fisher=adapted", "fisher_fraction=0.5"],
    ["first_order=true", "fisher_fraction=0.5"], ["inner_objective=dice", "activation=tanh"]])
def test_the_factory_gives_the_same_product_by_either_backend(overrides):
    # On a real navigation meta-batch; fisher_fraction < 1 takes the inner Hessians
    # at the iterates of the adaptation on all episodes (tests/test_rl_maml_trpo.py
    # checks the autograd product there against a brute force).
    config, policy, batch, valid = navigation_batch(overrides)
    meta = detach_params(params_of(policy))
    products = {}
    for backend in ["structured", "autograd"]:
        config.fisher_backend = backend
        products[backend] = make_fisher_product(policy, meta, batch.train, batch.iterates, valid,
                                                config, kl_through_adaptation=None)
    for v in random_vectors(meta):
        torch.testing.assert_close(products["structured"](v), products["autograd"](v),
                                   rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("overrides", [
    [], ["fisher=adapted"], ["first_order=true"], ["inner_objective=dice", "activation=tanh"],
    ["method=anil"]])
def test_bfloat16_products_are_the_exact_ones_to_bfloat16_rounding(overrides):
    # Computed in bfloat16 (8 bits of mantissa), returned in the vector's dtype.
    config, policy, batch, valid = navigation_batch(overrides)
    meta = detach_params(params_of(policy))
    products = {}
    for dtype in ["float32", "bfloat16"]:
        config.fisher_dtype = dtype
        products[dtype] = make_fisher_product(policy, meta, batch.train, batch.iterates, valid,
                                              config, kl_through_adaptation=None)
    for v in random_vectors(meta):
        exact, low = products["float32"](v), products["bfloat16"](v)
        assert low.dtype == v.dtype == torch.float64
        assert 0 < ((low - exact).norm() / exact.norm()).item() < 2e-2


def test_bfloat16_products_refuse_the_autograd_backends():
    from metarl.config import ConfigError
    for key in ["fisher=autograd", "fisher_backend=autograd"]:
        with pytest.raises(ConfigError, match="fisher_dtype"):
            load_config(data={"kind": "rl"}, overrides=["fisher_dtype=bfloat16", key])


def test_structured_backend_refuses_other_models():
    config, _, batch, valid = navigation_batch(["fisher_backend=structured"])
    policy = MLP(2, 2, (4,)).double()  # no distribution head: not a supported policy
    assert mlp_layout(policy) is None
    with pytest.raises(ValueError, match="fisher_backend: structured supports"):
        make_fisher_product(policy, detach_params(params_of(policy)), batch.train,
                            batch.iterates, valid, config, None)


def test_subsample_then_structured_matches_unflattened_shapes():
    config, policy, batch, valid = navigation_batch(["fisher_fraction=0.3"])
    meta = detach_params(params_of(policy))
    part = subsample_episodes(valid, 0.3)
    product = make_fisher_product(policy, meta, batch.train, batch.iterates, valid, config, None)
    v = random_vectors(meta, 1)[0]
    out = unflatten(product(v), meta)
    assert part.episodes_per_task == 2 and set(out) == set(meta)
    assert all(out[k].shape == meta[k].shape for k in meta)


def test_kfac_factors_are_exact_for_a_single_step():
    # One valid step of one task: each layer's Fisher block is a a^T (x) sum_j g_j g_j^T
    # exactly, so kron(G, A) must equal the exact product on basis vectors.
    from metarl.rl.kfac import kronecker_factors
    for discrete in [False, True]:
        policy = make_policy(discrete, "tanh")
        _, valid = synthetic_batch(policy, 0, discrete)
        mask = torch.zeros_like(valid.mask)
        mask[0, 0, 0] = 1
        valid = Episodes(valid.obs[:1], valid.actions[:1], valid.rewards[:1], mask[:1])
        params = expand_params(detach_params(params_of(policy)), 1)
        layout = mlp_layout(policy)
        fisher = PolicyFisher(layout, params, valid, Buffers())
        for (a, g), name_w, name_b in zip(kronecker_factors(fisher), layout.weights,
                                          layout.biases):
            out_dim, in_dim = params[name_w].shape[1:]
            exact = torch.zeros(out_dim * (in_dim + 1), out_dim * (in_dim + 1),
                                dtype=torch.float64)
            for index in range(exact.shape[0]):
                o, i = divmod(index, in_dim + 1)
                vector = {k: torch.zeros_like(v) for k, v in params.items()}
                if i < in_dim:
                    vector[name_w][0, o, i] = 1
                else:
                    vector[name_b][0, o] = 1
                column = fisher(vector)
                exact[:, index] = torch.cat([column[name_w][0], column[name_b][0, :, None]],
                                            -1).reshape(-1)
            torch.testing.assert_close(torch.kron(g, a), exact, rtol=1e-9, atol=1e-12)


def test_kfac_preconditioner_inverts_the_damped_kronecker_blocks():
    from metarl.rl.kfac import kfac_preconditioner, kronecker_factors
    policy = make_policy(False, "relu")
    _, valid = synthetic_batch(policy, 0, False)
    meta = detach_params(params_of(policy))
    adapted = expand_params(meta, T)
    layout = mlp_layout(policy)
    damping = 0.3
    fisher = PolicyFisher(layout, adapted, valid, Buffers())
    precondition = kfac_preconditioner(fisher, meta, damping)
    factors = kronecker_factors(fisher)
    v = random_vectors(meta, 1)[0]
    got = unflatten(precondition(v), meta)
    vector = unflatten(v, meta)
    for (a, g), name_w, name_b in zip(factors, layout.weights, layout.biases):
        mean_a, mean_g = a.diagonal().mean(), g.diagonal().mean()
        scale = (damping * mean_a * mean_g).sqrt()
        a_damped = a + scale * (mean_a / mean_g).sqrt() * torch.eye(len(a), dtype=a.dtype)
        g_damped = g + scale * (mean_g / mean_a).sqrt() * torch.eye(len(g), dtype=g.dtype)
        block = torch.cat([vector[name_w], vector[name_b][:, None]], -1).reshape(-1)
        want = torch.linalg.solve(torch.kron(g_damped, a_damped), block)
        torch.testing.assert_close(torch.cat([got[name_w], got[name_b][:, None]], -1).reshape(-1),
                                   want, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(got["log_std"], vector["log_std"] / (2 * (1 + damping)))


@pytest.mark.parametrize("discrete,activation,objective,steps,first_order", [
    (False, "tanh", "reinforce", 2, False), (False, "relu", "lvc", 1, False),
    (False, "relu", "dice", 2, False), (False, "tanh", "reinforce", 2, True),
    (True, "tanh", "dice", 2, False), (True, "relu", "reinforce", 1, True)])
def test_structured_meta_gradient_equals_autograd_through_the_adaptation(
        discrete, activation, objective, steps, first_order):
    policy = make_policy(discrete, activation)
    train, valid = synthetic_batch(policy, steps, discrete, seed=1)
    meta = detach_params(params_of(policy))
    loss, lr = inner_loss(objective), 0.3
    iterates = inner_iterates(policy, meta, train, loss, lr, T)
    old_log_probs = log_probs(policy, iterates[-1], valid).detach()
    advantages = torch.randn(valid.mask.shape, generator=torch.Generator().manual_seed(5),
                             dtype=torch.float64) * valid.mask
    _, expected = flat_gradient(lambda p: surrogate_loss(
        policy, adapt_through(policy, p, train, loss, lr, first_order, T), valid, advantages,
        old_log_probs), meta)
    curvature = StructuredCurvature(mlp_layout(policy), meta, train, iterates, valid,
                                    objective, lr, first_order)
    torch.testing.assert_close(curvature.meta_gradient(advantages), expected,
                               rtol=1e-9, atol=1e-12)
