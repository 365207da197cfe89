"""Conv4 adaptation over a meta-batch: vmap == per-task loop; checkpointed == plain gradients."""

import pytest
import torch
import torch.nn.functional as F

from metarl.functional import call, params_of
from metarl.meta import MetaSGDRates, adapt_per_task, adapt_vmap, head_names
from metarl.models import Conv4
from metarl.supervised.classify import cross_entropy_loss, task_logits
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
def test_vmap_adaptation_equals_the_per_task_loop(pool):
    model, support, query = conv_problem(pool)
    params = params_of(model)
    loop = adapt_per_task(one_task_loss(model), params, list(zip(*support)), 0.3, 2)
    vmapped = adapt_vmap(one_task_loss(model), params, support, 0.3, 2)
    stacked = {mode: adapt_tasks(model, cross_entropy_loss(mode), params, support, 0.3, 2, False)
               for mode in ("vmap", "loop")}
    for k in params:
        for got in (vmapped[k], stacked["vmap"][k], stacked["loop"][k]):
            torch.testing.assert_close(got, loop[k], rtol=1e-5, atol=1e-5)
    # And the second-order meta-gradient through it, against a loop of separate tasks.
    grads = {}
    for mode in ("vmap", "loop"):
        loss = meta_loss("maml", model, cross_entropy_loss(mode), params, support, query, 0.3, 2)
        grads[mode] = torch.autograd.grad(loss, list(params.values()))
    total = sum(one_task_loss(model)(
        {k: v[t] for k, v in loop.items()}, (query[0][t], query[1][t])) for t in range(3)) / 3
    reference = torch.autograd.grad(total, list(params.values()))
    for mode, got in grads.items():
        for g, r in zip(got, reference):
            torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-8, msg=mode)


def test_task_logits_use_each_tasks_own_batch_statistics():
    model, support, _ = conv_problem(pool=False)
    stacked = {k: v.unsqueeze(0).expand(3, *v.shape) for k, v in params_of(model).items()}
    together = task_logits(model, stacked, support[0], "vmap")
    for t in range(3):
        torch.testing.assert_close(together[t], model(support[0][t]))


@pytest.mark.parametrize("method", ["maml", "metasgd", "anil"])
def test_checkpointed_inner_steps_give_the_same_gradients(method):
    model, support, query = conv_problem(pool=False)
    rates = MetaSGDRates(model, 0.2).double() if method == "metasgd" else None
    inputs = list(model.parameters()) + (list(rates.parameters()) if rates else [])
    grads = []
    for checkpointing in (False, True):
        loss = meta_loss(method, model, cross_entropy_loss("vmap"), params_of(model), support,
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
