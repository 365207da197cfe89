"""Meta-SGD and ANIL for MAML-TRPO: the exact Fisher product against the third-order one,
the meta-gradient by finite differences, and training end to end."""

import numpy as np
import pytest
import torch
from test_rl_maml_trpo import require_grad, small_batch

from envs.navigation import Navigation2DFamily
from metarl.checkpoint import load_checkpoint
from metarl.config import load_config
from metarl.functional import call, detach_params, flatten, params_of, unflatten
from metarl.meta import MetaSGDRates
from metarl.rl.adaptation import adapt_through, inner_iterates, inner_names_of, with_rates
from metarl.rl.evaluate import evaluate_rl
from metarl.rl.fisher import (
    StructuredCurvature,
    autograd_product,
    third_order_product,
)
from metarl.rl.losses import inner_loss, log_probs, mean_kl, surrogate_loss
from metarl.rl.mlp_fisher import mlp_layout
from metarl.rl.train import train
from metarl.schema import ConfigError


def meta_parameters(method, policy, config):
    """The TRPO step's meta-parameters: the policy's, and Meta-SGD's rates (not all equal)."""
    meta = detach_params(params_of(policy))
    if method != "metasgd":
        return meta
    rates = MetaSGDRates(policy, config.inner_lr).double()
    with torch.no_grad():
        for r in rates.rates:
            r.mul_(torch.rand(r.shape, generator=torch.Generator().manual_seed(4),
                              dtype=r.dtype) + 0.5)
    return with_rates(meta, detach_params(rates.as_dict()))


def problem(method, first_order=False):
    """(config, float64 policy, navigation meta-batch, meta-parameters) for ``method``."""
    config, policy, batch = small_batch("reinforce", first_order)
    config.method = method
    return config, policy, batch, meta_parameters(method, policy, config)


METHODS = pytest.mark.parametrize("method,first_order", [("metasgd", False),
                                                         ("metasgd", True), ("anil", False)])


def adapted_fn(policy, batch, config):
    names = inner_names_of(policy, config)
    return lambda p: adapt_through(policy, p, batch.train, inner_loss(config.inner_objective),
                                   config.inner_lr, config.first_order, None, names)


@METHODS
def test_exact_fisher_product_equals_the_third_order_one(method, first_order):
    config, policy, batch, meta = problem(method, first_order)
    adapted = adapted_fn(policy, batch, config)
    old = call(policy, detach_params(adapted(require_grad(meta))), batch.valid.obs)
    brute = third_order_product(
        lambda p: mean_kl(old, call(policy, adapted(p), batch.valid.obs), batch.valid.mask),
        meta)
    fast = autograd_product(policy, meta, batch.train, inner_loss("reinforce"),
                            config.inner_lr, first_order, batch.valid, old,
                            inner_names=inner_names_of(policy, config))
    for seed in range(3):
        v = torch.randn(flatten(meta).numel(), generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
        torch.testing.assert_close(fast(v), brute(v), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("method", ["metasgd", "anil"])
def test_meta_gradient_matches_finite_differences(method):
    config, policy, batch, meta = problem(method)
    adapted = adapted_fn(policy, batch, config)

    def objective(p):
        return surrogate_loss(policy, adapted(p), batch.valid, batch.valid_advantages,
                              batch.valid_log_probs)

    flat = flatten(meta).clone().requires_grad_()
    (grad,) = torch.autograd.grad(objective(unflatten(flat, meta)), flat)
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(flat.numel(), generator=g, dtype=torch.float64)
    eps = 1e-6
    plus = objective(require_grad(unflatten(flat.detach() + eps * direction, meta))).item()
    minus = objective(require_grad(unflatten(flat.detach() - eps * direction, meta))).item()
    torch.testing.assert_close(grad @ direction,
                               torch.tensor((plus - minus) / (2 * eps), dtype=torch.float64),
                               rtol=1e-5, atol=1e-9)
    if method == "metasgd":  # the rates get gradient through the step
        rates_part = grad[sum(params_of(policy)[k].numel() for k in params_of(policy)):]
        assert rates_part.abs().sum() > 0
    if method == "anil":  # the body is still meta-learned by the outer step
        assert grad.abs().sum() > 0


def test_anil_adapts_the_last_layer_only():
    config, policy, batch = small_batch("reinforce")
    config.method = "anil"
    names = inner_names_of(policy, config)
    assert names == ["mean.layers.1.weight", "mean.layers.1.bias"]
    meta = detach_params(params_of(policy))
    adapted = adapted_fn(policy, batch, config)(require_grad(meta))
    for k, v in meta.items():
        moved = not torch.allclose(adapted[k][0], v)
        assert moved == (k in names), k


@METHODS
def test_structured_curvature_equals_autograd(method, first_order):
    config, policy, batch, meta = problem(method, first_order)
    names = inner_names_of(policy, config)
    loss = inner_loss("reinforce")
    iterates = inner_iterates(policy, meta, batch.train, loss, config.inner_lr, 3, names)
    old = call(policy, iterates[-1], batch.valid.obs)
    reference = autograd_product(policy, meta, batch.train, loss, config.inner_lr,
                                 first_order, batch.valid, old, iterates, names)
    structured = StructuredCurvature(mlp_layout(policy), meta, batch.train, iterates,
                                     batch.valid, "reinforce", config.inner_lr, first_order,
                                     policy, names)
    for seed in range(2):
        v = torch.randn(flatten(meta).numel(), generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
        torch.testing.assert_close(structured.product(v), reference(v), rtol=1e-8,
                                   atol=1e-11)
    # The meta-gradient, against autograd through the adaptation, where (as in training)
    # the adapted policies' log-probabilities are the sampling ones (every ratio 1).
    batch.valid_log_probs = log_probs(policy, iterates[-1], batch.valid)
    flat = flatten(meta).clone().requires_grad_()
    surrogate = surrogate_loss(policy, adapted_fn(policy, batch, config)(unflatten(flat, meta)),
                               batch.valid, batch.valid_advantages, batch.valid_log_probs)
    (grad,) = torch.autograd.grad(surrogate, flat)
    torch.testing.assert_close(structured.meta_gradient(batch.valid_advantages), grad,
                               rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("bad,match", [
    (["method=metasgd", "fisher=adapted"], "no curvature for Meta-SGD"),
    (["method=metasgd", "cg_preconditioner=kfac"], "kfac covers the policy"),
])
def test_unsupported_combinations_are_refused_early(bad, match):
    with pytest.raises(ConfigError, match=match):
        load_config(data={"kind": "rl"}, overrides=bad)


@pytest.mark.parametrize("method", ["metasgd", "anil"])
def test_training_steps_checkpoints_resumes_and_evaluates(tmp_path, method):
    settings = [f"method={method}", "meta_batch_size=4", "episodes_per_task=4", "horizon=10",
                "hidden_sizes=[8]", "checkpoint_every=2", "iterations=4"]
    family = Navigation2DFamily(max_episode_steps=10)
    train(load_config(data={"kind": "rl"}, overrides=settings), family, tmp_path / "full",
          progress=False)
    train(load_config(data={"kind": "rl"}, overrides=[*settings, "iterations=2"]), family,
          tmp_path / "split", progress=False)
    train(load_config(data={"kind": "rl"}, overrides=settings), family, tmp_path / "split",
          resume=True, progress=False)
    full = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    split = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    for k, v in full["model"].items():
        assert torch.equal(v, split["model"][k]), k
    if method == "metasgd":
        start = 0.1  # inner_lr: the rates start there and TRPO moved them
        for k, v in full["inner_rates"].items():
            assert torch.equal(v, split["inner_rates"][k]), k
        assert any(not torch.allclose(v, torch.full_like(v, start))
                   for v in full["inner_rates"].values())
    result = evaluate_rl(tmp_path / "full", family, steps=2, num_tasks=3, episodes=2,
                         checkpoint="checkpoint.pt")
    assert len(result["curve"]["mean"]) == 3 and np.isfinite(result["curve"]["mean"]).all()
