"""MAML++'s recipe: the multi-step loss and its gradient, per-step batch norm, learned
per-step rates, first-order warm-up, cosine outer rate, and its options end to end."""

import math

import pytest
import torch
from test_fewshot_adapt import conv_problem
from test_fewshot_train import data_dir, held_out, small_config  # noqa: F401 (fixture)

from metarl.checkpoint import load_checkpoint
from metarl.config import load_config
from metarl.functional import params_of
from metarl.meta import StepParams
from metarl.meta.maml_plus_plus import multi_step_loss, outer_lr_at, step_loss_weights
from metarl.schema import ConfigError
from metarl.supervised.classify import cross_entropy_loss
from metarl.supervised.fewshot_eval import evaluate_fewshot
from metarl.supervised.fewshot_train import train
from metarl.supervised.meta_step import meta_loss

TASK_LOSS = cross_entropy_loss("grouped")


def test_step_loss_weights_anneal_from_uniform_to_the_last_step():
    assert step_loss_weights(5, 0, 100) == pytest.approx([0.2] * 5)
    middle = step_loss_weights(5, 50, 100)
    assert sum(middle) == pytest.approx(1.0)
    assert middle[0] == pytest.approx(0.1) and middle[-1] == pytest.approx(0.6)
    late = step_loss_weights(5, 99, 100)
    assert late[0] == pytest.approx(0.03 / 5)  # the floor of the earlier steps
    assert step_loss_weights(5, 100, 100) == [0.0] * 4 + [1.0]
    assert step_loss_weights(5, 0, 0) == [0.0] * 4 + [1.0]


def test_last_step_alone_is_mamls_meta_objective():
    model, support, query = conv_problem(pool=False)
    params = params_of(model)
    ours = multi_step_loss(model, TASK_LOSS, params, support, query, 0.3, [0.0, 1.0], None,
                           False)
    torch.testing.assert_close(ours, meta_loss("maml", model, TASK_LOSS, params, support, query,
                                               0.3, 2), rtol=1e-12, atol=0)
    first = multi_step_loss(model, TASK_LOSS, params, support, query, 0.3, [0.0, 1.0], None,
                            True)
    grads = torch.autograd.grad(first, list(params.values()))
    fomaml = torch.autograd.grad(meta_loss("fomaml", model, TASK_LOSS, params, support, query,
                                           0.3, 2), list(params.values()))
    for a, b in zip(grads, fomaml):
        torch.testing.assert_close(a, b)


def step_params(model, steps=2, seed=3):
    rates = StepParams(model, steps, 0.3, per_step_norms=True, learned_rates=True).double()
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        for p in rates.parameters():  # distinct sets per step, so a mix-up shows
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return rates


def test_multi_step_loss_meta_gradient_matches_finite_differences():
    model, support, query = conv_problem(pool=False, tasks=2, ways=2)
    rates = step_params(model)
    inputs = list(model.parameters()) + list(rates.parameters())

    def loss():
        return multi_step_loss(model, TASK_LOSS, params_of(model), support, query, 0.3,
                               [0.4, 0.6], rates, False)

    grads = torch.autograd.grad(loss(), inputs, allow_unused=True, materialize_grads=True)
    g = torch.Generator().manual_seed(0)
    direction = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in inputs]
    analytic = sum((d * gr).sum() for d, gr in zip(direction, grads))
    eps = 1e-6
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            for p, d in zip(inputs, direction):
                p.add_(sign * eps * d)
        values.append(loss().detach())  # the inner steps need autograd
        with torch.no_grad():
            for p, d in zip(inputs, direction):
                p.sub_(sign * eps * d)
    numeric = (values[0] - values[1]) / (2 * eps)
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-9)
    assert all(r.grad is None for r in rates.parameters())  # nothing left behind
    rate_grads = grads[len(list(model.parameters())):]
    assert all(gr.abs().sum() > 0 for gr in rate_grads)  # per-step norms and rates learn


def test_each_step_uses_its_own_batch_norm_and_later_steps_the_last():
    model, support, query = conv_problem(pool=False)
    rates = step_params(model)
    params = params_of(model)

    def loss(weights):
        return multi_step_loss(model, TASK_LOSS, params, support, query, 0.3, weights, rates,
                               False).item()

    before = loss([1.0, 0.0]), loss([0.0, 1.0])
    with torch.no_grad():
        for p in rates.norms:
            p[1].mul_(1.5)  # step 2's set only
    after = loss([1.0, 0.0]), loss([0.0, 1.0])
    assert after[0] == before[0]  # the query after step 1 never sees step 2's set
    assert after[1] != before[1]
    _, norms = rates.test_time(0.3, 4, num_tasks=3)
    for later in norms[2:]:
        for name, p in zip(rates.norm_names, rates.norms):
            torch.testing.assert_close(later[name][0], p[1].detach())


def test_cosine_outer_rate():
    assert outer_lr_at(0, 100, 1e-3, 1e-5) == pytest.approx(1e-3)
    assert outer_lr_at(50, 100, 1e-3, 1e-5) == pytest.approx((1e-3 + 1e-5) / 2)
    assert outer_lr_at(100, 100, 1e-3, 1e-5) == pytest.approx(1e-5)
    assert outer_lr_at(25, 100, 1.0, 0.0) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)


def test_maml_plus_plus_options_are_checked_early():
    base = {"kind": "fewshot", "per_step_batch_norm": True}
    with pytest.raises(ConfigError, match="MAML\\+\\+ options for method maml, got method "
                                          "'metasgd'"):
        load_config(data={**base, "method": "metasgd"})
    with pytest.raises(ConfigError, match="grad_checkpointing"):
        load_config(data={**base, "grad_checkpointing": True})


RECIPE = ("inner_steps=2", "eval_inner_steps=3", "multi_step_loss_iterations=20",
          "per_step_batch_norm=true", "learned_step_rates=true", "first_order_iterations=10")


def test_the_recipe_trains_evaluates_and_resumes(tmp_path, data_dir):  # noqa: F811
    train(small_config(data_dir, *RECIPE, "iterations=1"), tmp_path / "zero", progress=False)
    metrics = train(small_config(data_dir, *RECIPE, "outer_lr_schedule=cosine"),
                    tmp_path / "run", progress=False)
    (loss, accuracy), (loss_zero, _) = held_out(tmp_path / "run"), held_out(tmp_path / "zero")
    assert loss < 0.85 * loss_zero and accuracy > 1 / 3 + 0.05
    assert metrics["accuracy/query_after_adaptation"] > 1 / 3
    with pytest.raises(ConfigError, match="learned per-step rates"):
        evaluate_fewshot(tmp_path / "run", num_tasks=10, inner_lr=0.1)
    # Resumed half-way (schedules are functions of the iteration): the same parameters.
    train(small_config(data_dir, *RECIPE), tmp_path / "full", progress=False)
    train(small_config(data_dir, *RECIPE, "iterations=20"), tmp_path / "split", progress=False)
    train(small_config(data_dir, *RECIPE), tmp_path / "split", resume=True, progress=False)
    full = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["model"]
    split = load_checkpoint(tmp_path / "split" / "checkpoint.pt")["model"]
    for k, v in full.items():
        assert torch.equal(v, split[k]), k
