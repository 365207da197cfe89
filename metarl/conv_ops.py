"""Conv4's two layers with hand-written first and second derivatives.

Second-order MAML on Conv4 differentiates the inner steps' backward pass. For
a grouped convolution (one group per task) and for batch norm, PyTorch's
generic double backward is slow on CPU: it loops over the groups for the
weight term, and batch norm's is a long chain of elementwise ops. Here each
layer is a pair of ``autograd.Function``s: the forward, whose backward is the
second function (so a backward taken with ``create_graph=True`` stays
differentiable), and that backward, whose own backward is written out with
the same few fused primitives (``convolution_backward``,
``native_batch_norm_backward``). Third derivatives are not implemented: a
backward through the second one with ``create_graph=True`` raises.

Both are exact: ``tests/test_conv_ops.py`` checks first and second
derivatives by finite differences (gradcheck, gradgradcheck) and against
PyTorch's own ops. Shapes follow ``F.conv2d`` / ``F.batch_norm``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd import Function


def _no_third_derivative(backward):
    """Run a second derivative without a graph; refuse to build one (a third derivative)."""
    def wrapper(ctx, *grads):
        if torch.is_grad_enabled():
            raise RuntimeError("metarl.conv_ops has first and second derivatives only; a "
                               "backward with create_graph=True through a second one is not "
                               "implemented")
        return backward(ctx, *grads)
    return wrapper


def _conv(x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, groups) -> Tensor:
    return torch.convolution(x, weight, bias, stride, padding, [1, 1], False, [0, 0], groups)


def _conv_grads(grad_out: Tensor, x: Tensor, weight: Tensor, stride, padding, groups,
                mask: list[bool]):
    """(grad x, grad weight, grad bias) of ``conv2d(x, weight, bias)``, each if asked."""
    return torch.ops.aten.convolution_backward(grad_out, x, weight, [weight.shape[0]], stride,
                                               padding, [1, 1], False, [0, 0], groups, mask)


class _Conv(Function):
    @staticmethod
    def forward(x, weight, bias, stride, padding, groups):
        return _conv(x, weight, bias, stride, padding, groups)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, _, ctx.stride, ctx.padding, ctx.groups = inputs
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        grads = _ConvBackward.apply(grad_out, x, weight, ctx.stride, ctx.padding, ctx.groups,
                                    (need[0], need[1], need[2]))
        return (*grads, None, None, None)


class _ConvBackward(Function):
    @staticmethod
    def forward(grad_out, x, weight, stride, padding, groups, mask):
        return _conv_grads(grad_out, x, weight, stride, padding, groups, list(mask))

    @staticmethod
    def setup_context(ctx, inputs, output):
        grad_out, x, weight, ctx.stride, ctx.padding, ctx.groups, ctx.mask = inputs
        ctx.save_for_backward(grad_out, x, weight)

    @staticmethod
    @_no_third_derivative
    def backward(ctx, gg_x, gg_weight, gg_bias):
        """The grads of (grad x, grad weight, grad bias) -> grads of (grad_out, x, weight).

        All three outputs are bilinear: grad x = convT(grad_out, weight), grad weight =
        corr(x, grad_out), grad bias = sum(grad_out).
        """
        grad_out, x, weight = ctx.saved_tensors
        need_grad_out, need_x, need_weight = ctx.needs_input_grad[:3]
        stride, padding, groups = ctx.stride, ctx.padding, ctx.groups
        if not ctx.mask[0]:
            gg_x = None
        if not ctx.mask[1]:
            gg_weight = None
        if not ctx.mask[2]:
            gg_bias = None
        d_grad_out = d_x = d_weight = None
        if need_grad_out:
            terms = []
            if gg_x is not None:
                terms.append(_conv(gg_x, weight, None, stride, padding, groups))
            if gg_weight is not None or gg_bias is not None:
                w = gg_weight if gg_weight is not None else torch.zeros_like(weight)
                terms.append(_conv(x, w, gg_bias, stride, padding, groups))
            d_grad_out = sum(terms) if terms else None
        if need_x and gg_weight is not None:
            d_x = _conv_grads(grad_out, x, gg_weight, stride, padding, groups,
                              [True, False, False])[0]
        if need_weight and gg_x is not None:
            d_weight = _conv_grads(grad_out, gg_x, weight, stride, padding, groups,
                                   [False, True, False])[1]
        return d_grad_out, d_x, d_weight, None, None, None, None


def conv2d(x: Tensor, weight: Tensor, bias: Tensor, stride: int, padding: int,
           groups: int = 1) -> Tensor:
    """``F.conv2d`` (square stride and padding) with a fast second derivative."""
    return _Conv.apply(x, weight, bias, [stride, stride], [padding, padding], groups)


def _channel(v: Tensor) -> Tensor:
    return v.view(1, -1, 1, 1)


def _sum(v: Tensor) -> Tensor:
    """Per-channel sum of (N, C, H, W) -> (1, C, 1, 1)."""
    return v.sum(dim=(0, 2, 3), keepdim=True)


def _relu_mask(grad: Tensor, y: Tensor) -> Tensor:
    """grad where y > 0, else 0 (y: a ReLU's output)."""
    return torch.ops.aten.threshold_backward(grad, y, 0)


class _BatchNormReLU(Function):
    @staticmethod
    def forward(x, weight, bias, eps):
        out, mean, rstd = torch.native_batch_norm(x, weight, bias, None, None, True, 0.0, eps)
        return out.relu_(), mean, rstd

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, _, ctx.eps = inputs
        y, mean, rstd = output
        ctx.mark_non_differentiable(mean, rstd)
        ctx.save_for_backward(x, weight, y, mean, rstd)

    @staticmethod
    def backward(ctx, grad_y, _grad_mean, _grad_rstd):
        x, weight, y, mean, rstd = ctx.saved_tensors
        grads = _BatchNormReLUBackward.apply(grad_y, x, weight, y.detach(), mean, rstd, ctx.eps)
        return (*grads, None)


class _BatchNormReLUBackward(Function):
    @staticmethod
    def forward(grad_y, x, weight, y, mean, rstd, eps):
        return torch.ops.aten.native_batch_norm_backward(_relu_mask(grad_y, y), x, weight, None,
                                                         None, mean, rstd, True, eps,
                                                         [True, True, True])

    @staticmethod
    def setup_context(ctx, inputs, output):
        grad_y, x, weight, y, mean, rstd, _ = inputs
        _, grad_weight, grad_bias = output
        ctx.save_for_backward(grad_y, x, weight, y, mean, rstd, grad_weight, grad_bias)

    @staticmethod
    @_no_third_derivative
    def backward(ctx, gg_x, gg_weight, gg_bias):
        """Per channel over its M = N*H*W values, with xh = (x - mean) r, r = rstd and
        g = grad_z (grad_y through the ReLU): grad bias = sum(g), grad weight = sum(g xh),
        grad x = w r (g - mean(g) - xh mean(g xh)). Returns the grads of (grad_y, x, weight).

        Every full-size term is a per-channel combination of gg_x, g and xh, so the
        channel sums it needs are sums already known (grad weight, grad bias) or three
        new ones; see ``tests/test_conv_ops.py`` for the check by finite differences.
        """
        grad_y, x, weight, y, mean, rstd, grad_weight, grad_bias = ctx.saved_tensors
        m = x.numel() // x.shape[1]
        r, w = _channel(rstd), _channel(weight)
        gw, gb = _channel(grad_weight), _channel(grad_bias)
        gg_w = _channel(gg_weight) if gg_weight is not None else torch.zeros_like(r)
        gg_b = _channel(gg_bias) if gg_bias is not None else torch.zeros_like(r)
        xh = torch.addcmul(-_channel(mean) * r, x, r)
        g = _relu_mask(grad_y, y)
        if gg_x is None:
            gg_x = torch.zeros_like(x)
        s_x, s_xh, s_g = _sum(gg_x), _sum(gg_x * xh), _sum(gg_x * g)

        # d/d grad_z: the adjoint of grad x (a self-adjoint projection) plus the sums.
        wr = w * r
        c = gg_w - wr * s_xh / m
        d_grad_z = torch.addcmul(gg_b - wr * s_x / m, gg_x, wr).addcmul_(xh, c)
        d_grad_y = _relu_mask(d_grad_z, y)

        # sum(gg_x * grad x) = w r s.
        s = s_g - gb * s_x / m - gw * s_xh / m
        d_weight = (r * s).flatten()
        # d/dxh at fixed r is a1 gg_x + c g; then through xh(x) and r(x) = (var + eps)^-1/2.
        a1 = -wr * gw / m
        k1 = -(r * (a1 * s_xh + c * gw) + r * r * w * s) / m
        k0 = -r * (a1 * s_x + c * gb) / m
        d_x = torch.addcmul(k0, gg_x, r * a1).addcmul_(g, r * c).addcmul_(xh, k1)
        return d_grad_y, d_x, d_weight, None, None, None, None


def batch_norm_relu(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """``relu(batch_norm(x))`` with the batch's statistics and a fast second derivative.

    x (N, C, H, W); weight, bias (C,).
    """
    return _BatchNormReLU.apply(x, weight, bias, eps)[0]
