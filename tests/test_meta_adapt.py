"""The inner loop: meta-gradients against finite differences, and the variants."""

import torch
import torch.nn.functional as F

from metarl.functional import call, expand_params, params_of, select_task
from metarl.meta import MetaSGDRates, adapt, adapt_per_task, adapt_vmap, head_names, reptile_grads
from metarl.models import MLP


def tiny_problem(num_tasks=3, k=4, seed=0):
    torch.manual_seed(seed)
    model = MLP(1, 1, (5,), activation="tanh").double()
    x = torch.randn(num_tasks, 2 * k, 1, dtype=torch.float64)
    y = torch.sin(3 * x) * torch.arange(1, num_tasks + 1, dtype=torch.float64).view(-1, 1, 1)
    support, query = (x[:, :k], y[:, :k]), (x[:, k:], y[:, k:])
    return model, support, query


def task_losses(model, params, batch):
    x, y = batch
    return F.mse_loss(call(model, params, x), y, reduction="none").mean(dim=(1, 2))


def post_adaptation_loss(model, params, support, query, lr, steps, first_order=False, **kw):
    stacked = expand_params(params, support[0].shape[0])
    adapted = adapt(lambda p, b: task_losses(model, p, b).sum(), stacked, support, lr, steps,
                    first_order, **kw)
    return task_losses(model, adapted, query).mean()


def finite_difference_grad(fn, params, eps=1e-6):
    grads = {}
    for name, p in params.items():
        g = torch.zeros_like(p)
        for i in range(p.numel()):
            orig = p.view(-1)[i].item()
            values = []
            for shifted in (orig + eps, orig - eps):
                with torch.no_grad():
                    p.view(-1)[i] = shifted
                values.append(fn().item())
            with torch.no_grad():
                p.view(-1)[i] = orig
            plus, minus = values
            g.view(-1)[i] = (plus - minus) / (2 * eps)
        grads[name] = g
    return grads


def test_second_order_meta_gradient_matches_finite_differences():
    model, support, query = tiny_problem()
    params = params_of(model)
    loss = post_adaptation_loss(model, params, support, query, lr=0.3, steps=2)
    auto = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    numeric = finite_difference_grad(
        lambda: post_adaptation_loss(model, params, support, query, lr=0.3, steps=2), params)
    for name in params:
        torch.testing.assert_close(auto[name], numeric[name], rtol=1e-6, atol=1e-8)
    # The second-order terms matter here: the first-order gradient is clearly different.
    fo = post_adaptation_loss(model, params, support, query, 0.3, 2, first_order=True)
    fo_grads = torch.autograd.grad(fo, list(params.values()))
    gap = max((a - b).abs().max().item() for a, b in zip(fo_grads, auto.values()))
    assert gap > 1e-3


def test_first_order_gives_gradient_at_adapted_params():
    model, support, query = tiny_problem()
    params = params_of(model)
    loss = post_adaptation_loss(model, params, support, query, 0.3, 2, first_order=True)
    got = torch.autograd.grad(loss, list(params.values()))
    stacked = expand_params(params, 3)
    adapted = adapt(lambda p, b: task_losses(model, p, b).sum(), stacked, support, 0.3, 2, True)
    expected = [torch.zeros_like(p) for p in params.values()]
    for t in range(3):
        at = {k: v[t].detach().requires_grad_() for k, v in adapted.items()}
        task_loss = task_losses(model, {k: v.unsqueeze(0) for k, v in at.items()},
                                tuple(b[t : t + 1] for b in query)).sum() / 3
        for e, g in zip(expected, torch.autograd.grad(task_loss, list(at.values()))):
            e += g
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


def test_adapt_leaves_module_untouched():
    model, support, query = tiny_problem()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = post_adaptation_loss(model, params_of(model), support, query, 0.3, 3)
    loss.backward()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_stacked_and_vmap_adaptation_equal_a_loop_over_tasks():
    model, support, _ = tiny_problem(num_tasks=4)
    params = params_of(model)
    one_task = lambda p, b: F.mse_loss(call(model, p, b[0]), b[1])
    loop = adapt_per_task(one_task, params, list(zip(*support)), 0.1, 3)
    stacked = adapt(lambda p, b: task_losses(model, p, b).sum(), expand_params(params, 4),
                    support, 0.1, 3)
    vmapped = adapt_vmap(one_task, params, support, 0.1, 3)
    for k in params:
        torch.testing.assert_close(stacked[k], loop[k])
        torch.testing.assert_close(vmapped[k], loop[k])


def test_meta_sgd_rates_receive_gradients_and_are_used():
    model, support, query = tiny_problem()
    rates = MetaSGDRates(model, 0.1).double()
    loss = post_adaptation_loss(model, params_of(model), support, query, rates.as_dict(), 1)
    loss.backward()
    assert all(r.grad is not None and r.grad.abs().sum() > 0 for r in rates.rates)
    with torch.no_grad():
        rates.rates[0].mul_(0)  # a zero rate freezes that parameter in the inner loop
    adapted = adapt(lambda p, b: task_losses(model, p, b).sum(), expand_params(params_of(model), 3),
                    support, rates.as_dict(), 1)
    first = rates.names[0]
    torch.testing.assert_close(adapted[first][0], params_of(model)[first])


def test_anil_adapts_only_the_head():
    model, support, _ = tiny_problem()
    head = head_names(model)
    assert head == ["layers.1.weight", "layers.1.bias"]
    params = params_of(model)
    adapted = adapt(lambda p, b: task_losses(model, p, b).sum(), expand_params(params, 3),
                    support, 0.5, 2, inner_names=head)
    for k in params:
        changed = not torch.allclose(select_task(adapted, 0)[k], params[k])
        assert changed == (k in head)


def test_reptile_moves_toward_adapted_params():
    model, support, _ = tiny_problem()
    params = params_of(model)
    adapted = adapt(lambda p, b: task_losses(model, p, b).sum(), expand_params(params, 3),
                    support, 0.5, 5, first_order=True)
    grads = reptile_grads(params, adapted)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    distance = lambda: sum((params[k] - adapted[k].detach().mean(0)).norm() for k in params)
    before = distance()
    for k, p in params.items():
        p.grad = grads[k]
    opt.step()
    assert distance() < 0.51 * before


def test_masked_relu_matches_torch_relu_with_derivatives():
    from metarl.models import ReLU

    x = torch.randn(50, dtype=torch.float64, requires_grad=True)
    v = torch.randn(50, dtype=torch.float64)
    ours, ref = ReLU()(x), torch.relu(x)
    torch.testing.assert_close(ours, ref)
    (g_ours,) = torch.autograd.grad((ours * v).sum(), x, create_graph=True)
    (g_ref,) = torch.autograd.grad((ref * v).sum(), x, create_graph=True)
    torch.testing.assert_close(g_ours, g_ref)


def test_task_adaptive_meta_gradient_matches_finite_differences():
    """Gradient of the query loss after two task-adaptive steps, with respect to the
    rate encoder and to the model (which also shapes the support embedding)."""
    from metarl.functional import params_of
    from metarl.meta import TaskRates
    from metarl.models import MLP
    from metarl.supervised.meta_step import meta_loss, mse_per_task

    torch.manual_seed(0)
    model = MLP(1, 1, (8, 8)).double()
    rates = TaskRates(model, 0.05).double()
    with torch.no_grad():  # away from the zero start, where every task gets alpha
        rates.encoder.weight.normal_(0.0, 0.5)
        rates.encoder.bias.normal_(0.0, 0.5)
    x = torch.linspace(-3, 3, 3 * 10, dtype=torch.float64).view(3, 10, 1)
    y = torch.sin(x * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64).view(3, 1, 1))
    support, query = (x[:, ::2], y[:, ::2]), (x[:, 1::2], y[:, 1::2])

    def objective() -> torch.Tensor:
        return meta_loss("tamaml", model, mse_per_task, params_of(model), support, query,
                         0.05, 2, rates)

    checked = [rates.encoder.weight, rates.encoder.bias, model.layers[0].weight]
    grads = torch.autograd.grad(objective(), checked)
    gen = torch.Generator().manual_seed(1)
    for tensor, grad in zip(checked, grads):
        for index in torch.randint(0, tensor.numel(), (4,), generator=gen).tolist():
            flat = tensor.data.view(-1)
            original = flat[index].item()
            flat[index] = original + 1e-6  # .data: no autograd record of the nudge
            up = objective().item()
            flat[index] = original - 1e-6
            down = objective().item()
            flat[index] = original
            assert abs((up - down) / 2e-6 - grad.view(-1)[index].item()) < 1e-7
    assert grads[0].abs().sum() > 0  # the encoder is meta-learned


def test_task_adaptive_rates_start_as_maml_and_differ_by_task():
    from metarl.functional import expand_params, params_of
    from metarl.meta import TaskRates
    from metarl.models import MLP

    model = MLP(1, 1, (8,))
    rates = TaskRates(model, 0.01)
    stacked = expand_params(params_of(model), 2)
    support_x = torch.stack([torch.zeros(5, 1), torch.ones(5, 1)])
    start = rates.for_tasks(model, stacked, support_x)
    assert all(torch.allclose(r, torch.full_like(r, 0.01)) for r in start.values())
    assert start["layers.0.weight"].shape == (2, 1, 1) and start["layers.1.bias"].shape == (2, 1)
    with torch.no_grad():
        rates.encoder.weight.fill_(1.0)
    later = rates.for_tasks(model, stacked, support_x)["layers.0.weight"].flatten()
    assert later[0] != later[1] and ((later > 0) & (later < 0.02)).all()
