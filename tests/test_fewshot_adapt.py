"""Conv4 adaptation over a meta-batch: grouped == vmap == per-task loop; checkpointed == plain."""

import pytest
import torch
import torch.nn.functional as F

from metarl.functional import call, params_of
from metarl.meta import MetaSGDRates, adapt_per_task, adapt_vmap, head_names
from metarl.models import Conv4
from metarl.supervised.classify import cross_entropy_loss, per_task_mode, task_logits
from metarl.supervised.meta_step import adapt_tasks, meta_loss


def conv_problem(pool: bool, tasks=3, ways=3, shots=2, seed=0):
    """A small float64 Conv4 (batch norm included) and random support / query sets."""
    torch.manual_seed(seed)
    size = 16 if pool else 12
    model = Conv4(2, ways, filters=4, pool=pool, image_size=size).double()
    labels = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1)
    support = (torch.rand(tasks, ways * shots, 2, size, size, dtype=torch.float64), labels)
    query = (torch.rand(tasks, ways * shots, 2, size, size, dtype=torch.float64), labels)
    return model, support, query


def one_task_loss(model):
    return lambda p, b: F.cross_entropy(call(model, p, b[0]), b[1])


@pytest.mark.parametrize("pool", [False, True], ids=["strided", "pool"])
def test_batched_adaptation_equals_the_per_task_loop(pool):
    model, support, query = conv_problem(pool)
    params = params_of(model)
    loop = adapt_per_task(one_task_loss(model), params, list(zip(*support)), 0.3, 2)
    vmapped = adapt_vmap(one_task_loss(model), params, support, 0.3, 2)
    stacked = {mode: adapt_tasks(model, cross_entropy_loss(mode), params, support, 0.3, 2, False)
               for mode in ("grouped", "vmap", "loop")}
    for k in params:
        for got in (vmapped[k], *(stacked[mode][k] for mode in stacked)):
            torch.testing.assert_close(got, loop[k], rtol=1e-5, atol=1e-5)
    # And the second-order meta-gradient through it, against a loop of separate tasks.
    grads = {}
    for mode in ("grouped", "vmap", "loop"):
        loss = meta_loss("maml", model, cross_entropy_loss(mode), params, support, query, 0.3, 2)
        grads[mode] = torch.autograd.grad(loss, list(params.values()))
    total = sum(one_task_loss(model)(
        {k: v[t] for k, v in loop.items()}, (query[0][t], query[1][t])) for t in range(3)) / 3
    reference = torch.autograd.grad(total, list(params.values()))
    for mode, got in grads.items():
        for g, r in zip(got, reference):
            torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-8, msg=mode)


@pytest.mark.parametrize("mode", ["grouped", "vmap"])
@pytest.mark.parametrize("pool", [False, True], ids=["strided", "pool"])
def test_task_logits_use_each_tasks_own_parameters_and_batch_statistics(mode, pool):
    model, support, _ = conv_problem(pool)
    torch.manual_seed(1)
    stacked = {k: v + 0.1 * torch.randn(3, *v.shape, dtype=v.dtype)
               for k, v in params_of(model).items()}
    together = task_logits(model, stacked, support[0], mode)
    for t in range(3):
        alone = call(model, {k: v[t] for k, v in stacked.items()}, support[0][t])
        torch.testing.assert_close(together[t], alone)


@pytest.mark.parametrize("mode", ["grouped", "vmap"])
@pytest.mark.parametrize("method", ["maml", "metasgd", "anil"])
def test_checkpointed_inner_steps_give_the_same_gradients(method, mode):
    model, support, query = conv_problem(pool=False)
    rates = MetaSGDRates(model, 0.2).double() if method == "metasgd" else None
    inputs = list(model.parameters()) + (list(rates.parameters()) if rates else [])
    grads = []
    for checkpointing in (False, True):
        loss = meta_loss(method, model, cross_entropy_loss(mode), params_of(model), support,
                         query, 0.3, 3, rates, grad_checkpointing=checkpointing)
        grads.append(torch.autograd.grad(loss, inputs, allow_unused=True))
    for plain, recomputed in zip(*grads):
        assert (plain is None) == (recomputed is None)
        if plain is not None:
            torch.testing.assert_close(recomputed, plain, rtol=1e-10, atol=1e-12)
    if method == "metasgd":
        assert all(g.abs().sum() > 0 for g in grads[1][-len(list(rates.parameters())):])
    if method == "anil":
        assert head_names(model) == ["head.weight", "head.bias"]


def test_task_adaptive_rates_on_conv4_are_the_same_by_every_mode_and_per_task():
    """Each task's rates come from its own support features (batch norm on its own batch)."""
    from metarl.functional import expand_params
    from metarl.meta import TaskRates

    model, support, query = conv_problem(False)
    params = params_of(model)
    stacked = expand_params(params, 3)
    by_mode = {}
    for mode in ("grouped", "vmap", "loop"):
        rates = TaskRates(model, 0.3, per_task=per_task_mode(mode)).double()
        with torch.no_grad():
            rates.encoder.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(2))
        by_mode[mode] = (rates, rates.for_tasks(model, stacked, support[0]))
    alone = model(support[0][1], features_only=True).mean(0)  # task 1 by itself
    scale = 2 * torch.sigmoid(by_mode["vmap"][0].encoder(alone))
    for i, name in enumerate(by_mode["vmap"][0].names):
        torch.testing.assert_close(by_mode["vmap"][1][name], by_mode["loop"][1][name])
        torch.testing.assert_close(by_mode["grouped"][1][name], by_mode["loop"][1][name])
        torch.testing.assert_close(by_mode["vmap"][1][name][1].flatten(), 0.3 * scale[i:i + 1])
    head_rates = by_mode["vmap"][1]["head.bias"]
    assert not torch.allclose(head_rates[0], head_rates[1])  # tasks get their own rates
    grads = {}
    for mode, (rates, _) in by_mode.items():
        loss = meta_loss("tamaml", model, cross_entropy_loss(mode), params, support, query, 0.3,
                         1, rates)
        grads[mode] = torch.autograd.grad(loss, [*params.values(), rates.encoder.weight])
    for mode in ("grouped", "vmap"):
        for g, r in zip(grads[mode], grads["loop"]):
            torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-8, msg=mode)
