"""metarl.conv_ops: values as PyTorch's ops; first and second derivatives by finite differences;
compiled kernels as the eager ones."""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from metarl import conv_ops
from metarl.conv_ops import batch_norm_relu, conv2d
from metarl.functional import params_of
from metarl.models import Conv4
from metarl.supervised.classify import cross_entropy_loss
from metarl.supervised.meta_step import meta_loss


def conv_inputs(stride, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, size, size, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, generator=g, requires_grad=True)
    return x, w, b


@pytest.mark.parametrize("stride,size", [(1, 5), (2, 7), (2, 6)])
def test_grouped_conv_matches_torch_and_its_derivatives_are_exact(stride, size):
    x, w, b = conv_inputs(stride, size)
    fn = lambda x, w, b: conv2d(x, w, b, stride, 1, groups=2)  # noqa: E731
    torch.testing.assert_close(fn(x, w, b), F.conv2d(x, w, b, stride, 1, groups=2))
    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))
    # The first layer: its input (the images) needs no gradient.
    images = x.detach()
    assert gradgradcheck(lambda w, b: conv2d(images, w, b, stride, 1, groups=2), (w, b))


def test_conv_second_derivative_equals_torchs():
    x, w, b = conv_inputs(2, 7)
    v = torch.randn(3, 6, 4, 4, dtype=torch.float64)
    results = []
    for fn in (lambda *a: conv2d(*a, 2, 1, groups=2), lambda *a: F.conv2d(*a, 2, 1, groups=2)):
        out = fn(x, w, b)
        grads = torch.autograd.grad((out * v).sum(), (x, w), create_graph=True)
        loss = (grads[0] ** 2).sum() + (grads[1].sin()).sum()
        results.append(torch.autograd.grad(loss, (x, w, b), allow_unused=True,
                                           materialize_grads=True))
    for ours, torchs in zip(*results):
        torch.testing.assert_close(ours, torchs)


def bn_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = (torch.rand(3, dtype=torch.float64, generator=g) + 0.5).requires_grad_()
    b = (0.3 * torch.randn(3, dtype=torch.float64, generator=g)).requires_grad_()
    return x, w, b


def test_batch_norm_relu_matches_torch_with_batch_statistics():
    x, w, b = bn_inputs()
    expected = F.relu(F.batch_norm(x, None, None, w, b, training=True, eps=1e-5))
    torch.testing.assert_close(batch_norm_relu(x, w, b), expected)


def test_batch_norm_relu_derivatives_are_exact():
    x, w, b = bn_inputs()
    assert gradcheck(batch_norm_relu, (x, w, b))
    assert gradgradcheck(batch_norm_relu, (x, w, b))


def test_batch_norm_relu_second_derivative_equals_torchs():
    x, w, b = bn_inputs(seed=1)
    v = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    reference = lambda x, w, b: F.relu(F.batch_norm(x, None, None, w, b, training=True))  # noqa
    results = []
    for fn in (batch_norm_relu, reference):
        grads = torch.autograd.grad((fn(x, w, b) * v).sum(), (x, w, b), create_graph=True)
        loss = (grads[0] ** 2).sum() + grads[1].pow(3).sum() + grads[2].cos().sum()
        results.append(torch.autograd.grad(loss, (x, w, b), allow_unused=True,
                                           materialize_grads=True))
    for ours, torchs in zip(*results):
        torch.testing.assert_close(ours, torchs)


@pytest.mark.parametrize("op", ["conv", "batch_norm_relu"])
def test_third_derivatives_are_refused(op):
    x, w, b = conv_inputs(2, 7) if op == "conv" else bn_inputs()
    fn = (lambda x, w, b: conv2d(x, w, b, 2, 1, groups=2)) if op == "conv" else batch_norm_relu
    g1 = torch.autograd.grad(fn(x, w, b).pow(3).sum(), (x, w), create_graph=True)
    second = sum(g.pow(2).sum() for g in g1)
    torch.autograd.grad(second, x, retain_graph=True)  # the second derivative: fine
    with pytest.raises(RuntimeError, match="first and second derivatives only"):
        torch.autograd.grad(second, x, create_graph=True)


def test_compiled_kernels_give_the_eager_kernels_values_and_gradients(monkeypatch):
    """The default path (``METARL_COMPILE`` unset) compiles batch norm's kernels."""
    torch.manual_seed(0)
    model = Conv4(1, 5, filters=8, image_size=28)
    params = params_of(model)
    support = (torch.randn(3, 5, 1, 28, 28), torch.arange(5).repeat(3, 1))
    query = (torch.randn(3, 10, 1, 28, 28), torch.arange(5).repeat(3, 2))

    def meta_gradient():
        loss = meta_loss("maml", model, cross_entropy_loss("grouped"), params, support, query,
                         0.4, 2)
        return loss, torch.autograd.grad(loss, list(params.values()))

    monkeypatch.setenv("METARL_COMPILE", "0")
    eager_loss, eager = meta_gradient()
    monkeypatch.setenv("METARL_COMPILE", "1")
    compiled_loss, compiled = meta_gradient()
    if conv_ops._Kernel.compile_failed:
        pytest.skip("torch.compile cannot compile here (no C++ compiler?)")
    assert all(kernel.compiled is not None for kernel in conv_ops.KERNELS)  # each one ran
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    for c, e in zip(compiled, eager):
        torch.testing.assert_close(c, e, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_channels_last_input_gradient_equals_torchs(dtype):
    # Omniglot-like: 2 tasks' 16 channels stacked (a multiple of _to_nchw's block), stride 2,
    # 8x8 inputs (above NHWC_INPUT_GRAD_MIN_PIXELS); input, weight and bias grads together.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 32, 8, 8, dtype=dtype, generator=g, requires_grad=True)
    w = torch.randn(32, 16, 3, 3, dtype=dtype, generator=g, requires_grad=True)
    b = torch.randn(32, dtype=dtype, generator=g, requires_grad=True)
    assert 8 * 8 >= conv_ops.NHWC_INPUT_GRAD_MIN_PIXELS
    v = torch.randn(3, 32, 4, 4, dtype=dtype, generator=g)
    ours = torch.autograd.grad((conv2d(x, w, b, 2, 1, groups=2) * v).sum(), (x, w, b))
    torchs = torch.autograd.grad((F.conv2d(x, w, b, 2, 1, groups=2) * v).sum(), (x, w, b))
    assert ours[0].is_contiguous()
    for a, e in zip(ours, torchs):  # float32 (oneDNN) bit for bit; float64 to rounding
        exact = {"rtol": 0, "atol": 0} if dtype == torch.float32 else {}
        torch.testing.assert_close(a, e, **exact)


def test_to_nchw_moves_values_only():
    y = torch.randn(2, 48, 5, 3).contiguous(memory_format=torch.channels_last)
    out = conv_ops._to_nchw(y)
    assert out.is_contiguous() and torch.equal(out, y)
    odd = torch.randn(2, 6, 5, 3).contiguous(memory_format=torch.channels_last)
    assert torch.equal(conv_ops._to_nchw(odd), odd)
