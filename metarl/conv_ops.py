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

Batch norm's three kernels (forward, backward, double backward) are pure
functions, run through ``torch.compile`` unless ``METARL_COMPILE=0`` (see
``_Kernel``); the eager ones are the reference.

Both are exact: ``tests/test_conv_ops.py`` checks first and second
derivatives by finite differences (gradcheck, gradgradcheck) and against
PyTorch's own ops, and the compiled kernels against the eager ones. Shapes
follow ``F.conv2d`` / ``F.batch_norm``.
"""

from __future__ import annotations

import os
import warnings

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


# Strided convolutions whose input has at least this many pixels take their input
# gradient channels-last (``_input_grad``); below it the plain path was as fast or faster.
NHWC_INPUT_GRAD_MIN_PIXELS = 49


def _to_nchw(y: Tensor, block: int = 16) -> Tensor:
    """A channels-last (N, C, H, W) tensor -> the same values contiguous (NCHW).

    Why not ``y.contiguous()``: that transposes (H*W, C) per image with one strided pass,
    and with Conv4's stacked T*64 = 1024 channels (a 4 KiB stride) it runs at about a
    tenth of a plain copy's speed. Two passes over blocks of 16 channels (64-byte rows),
    each cache-friendly, take about half as long; same values, they are only moved.
    """
    n, c, h, w = y.shape
    if c % block:
        return y.contiguous()
    pixels = y.permute(0, 2, 3, 1).reshape(n, h * w, c // block, block)  # a view
    blocks = pixels.permute(0, 2, 1, 3).contiguous()  # (N, C / block, H*W, block)
    return blocks.transpose(2, 3).reshape(n, c, h, w)


def _input_grad(grad_out: Tensor, x: Tensor, weight: Tensor, stride, padding, groups) -> Tensor:
    """grad x of ``conv2d(x, weight)``, computed channels-last, returned contiguous.

    Why: for a strided convolution oneDNN computes the input gradient channels-last
    (``brgconv_strided``) whatever the layout asked for, and PyTorch converts it to NCHW
    with ``y.contiguous()``'s slow transposition (see ``_to_nchw``): on Omniglot 20-way's
    layer 2 that conversion is about 40% of the call. Asking for channels-last and
    converting with ``_to_nchw`` gives the same values (tests/test_conv_ops.py).
    """
    nhwc = torch.channels_last
    shape_of_x = torch.empty_like(x, memory_format=nhwc)  # the input gradient reads no values
    grad_x = torch.ops.aten.convolution_backward(
        grad_out.contiguous(memory_format=nhwc), shape_of_x, weight, [weight.shape[0]],
        stride, padding, [1, 1], False, [0, 0], groups, [True, False, False])[0]
    return _to_nchw(grad_x)


def _conv_grads(grad_out: Tensor, x: Tensor, weight: Tensor, stride, padding, groups,
                mask: list[bool]):
    """(grad x, grad weight, grad bias) of ``conv2d(x, weight, bias)``, each if asked."""
    if not (mask[0] and max(stride) > 1
            and x.shape[2] * x.shape[3] >= NHWC_INPUT_GRAD_MIN_PIXELS):
        return torch.ops.aten.convolution_backward(grad_out, x, weight, [weight.shape[0]],
                                                   stride, padding, [1, 1], False, [0, 0],
                                                   groups, mask)
    grad_weight = grad_bias = None
    if mask[1] or mask[2]:
        _, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
            grad_out, x, weight, [weight.shape[0]], stride, padding, [1, 1], False, [0, 0],
            groups, [False, mask[1], mask[2]])
    return _input_grad(grad_out, x, weight, stride, padding, groups), grad_weight, grad_bias


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


def bn_relu_forward(x: Tensor, weight: Tensor, bias: Tensor, eps: float):
    """(y, mean, rstd) of y = relu(batch_norm(x)) with the batch's statistics.

    x (N, C, H, W); weight, bias (C,) -> y like x; mean, rstd (C,).
    """
    out, mean, rstd = torch.native_batch_norm(x, weight, bias, None, None, True, 0.0, eps)
    return out.relu_(), mean, rstd


def bn_relu_backward(grad_y: Tensor, x: Tensor, weight: Tensor, y: Tensor, mean: Tensor,
                     rstd: Tensor, eps: float):
    """(grad x, grad weight, grad bias) of ``bn_relu_forward``; shapes as its inputs."""
    return torch.ops.aten.native_batch_norm_backward(_relu_mask(grad_y, y), x, weight, None,
                                                     None, mean, rstd, True, eps,
                                                     [True, True, True])


def bn_relu_double_backward(grad_y: Tensor, x: Tensor, weight: Tensor, y: Tensor,
                            mean: Tensor, rstd: Tensor, grad_weight: Tensor, grad_bias: Tensor,
                            gg_x: Tensor, gg_weight: Tensor, gg_bias: Tensor):
    """The grads of (grad x, grad weight, grad bias) -> grads of (grad_y, x, weight).

    Per channel over its M = N*H*W values, with xh = (x - mean) r, r = rstd and
    g = grad_z (grad_y through the ReLU): grad bias = sum(g), grad weight = sum(g xh),
    grad x = w r (g - mean(g) - xh mean(g xh)).

    Every full-size term is a per-channel combination of gg_x, g and xh, so the
    channel sums it needs are sums already known (grad weight, grad bias) or three
    new ones; see ``tests/test_conv_ops.py`` for the check by finite differences.
    """
    m = x.numel() // x.shape[1]
    r, w = _channel(rstd), _channel(weight)
    gw, gb = _channel(grad_weight), _channel(grad_bias)
    gg_w, gg_b = _channel(gg_weight), _channel(gg_bias)
    xh = torch.addcmul(-_channel(mean) * r, x, r)
    g = _relu_mask(grad_y, y)
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
    return d_grad_y, d_x, d_weight


def compiled_kernels_enabled() -> bool:
    """Whether batch norm's kernels run compiled (``METARL_COMPILE`` unset or not ``0``)."""
    return os.environ.get("METARL_COMPILE", "1") != "0"


class _Kernel:
    """A kernel run by ``torch.compile`` when ``compiled_kernels_enabled()``.

    Why: on CPU each of batch norm's kernels is a chain of memory-bound passes over
    the activations; inductor fuses each chain into one or two loops (3x faster for
    the double backward on Omniglot 20-way's first layer). One compile serves every
    shape (``dynamic=True``), is cached on disk by torch, and takes seconds to half a
    minute the first time. Where compiling fails (no C++ compiler), one warning,
    and the eager kernel from then on.
    """

    compile_failed = False  # shared: after one failure every kernel runs eager

    def __init__(self, kernel):
        self.kernel = kernel
        self.compiled = None  # torch.compile's wrapper, made on the first call

    def __call__(self, *args):
        if not compiled_kernels_enabled() or _Kernel.compile_failed:
            return self.kernel(*args)
        # One compiled version for all calls: torch.compile specialises on requires_grad
        # and strides (pooling's gradient arrives expanded).
        args = [a.detach().contiguous() if isinstance(a, Tensor) else a for a in args]
        try:
            if self.compiled is None:
                self.compiled = torch.compile(self.kernel, dynamic=True)
            return self.compiled(*args)
        except Exception as error:  # noqa: BLE001 - a compiler failure means eager
            _Kernel.compile_failed = True
            reason = (str(error).strip().splitlines() or [""])[0][:200]
            warnings.warn(f"metarl.conv_ops: torch.compile failed ({type(error).__name__}: "
                          f"{reason}); batch norm runs its eager kernels (slower). Set "
                          "METARL_COMPILE=0 to skip compiling.", stacklevel=2)
            return self.kernel(*args)


_forward = _Kernel(bn_relu_forward)
_backward = _Kernel(bn_relu_backward)
_double_backward = _Kernel(bn_relu_double_backward)
KERNELS = (_forward, _backward, _double_backward)


class _BatchNormReLU(Function):
    @staticmethod
    def forward(x, weight, bias, eps):
        return _forward(x, weight, bias, eps)

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
        return _backward(grad_y, x, weight, y, mean, rstd, eps)

    @staticmethod
    def setup_context(ctx, inputs, output):
        grad_y, x, weight, y, mean, rstd, _ = inputs
        _, grad_weight, grad_bias = output
        ctx.save_for_backward(grad_y, x, weight, y, mean, rstd, grad_weight, grad_bias)

    @staticmethod
    @_no_third_derivative
    def backward(ctx, gg_x, gg_weight, gg_bias):
        grad_y, x, weight, y, mean, rstd, grad_weight, grad_bias = ctx.saved_tensors
        gg_x = torch.zeros_like(x) if gg_x is None else gg_x
        gg_weight = torch.zeros_like(weight) if gg_weight is None else gg_weight
        gg_bias = torch.zeros_like(weight) if gg_bias is None else gg_bias
        d_grad_y, d_x, d_weight = _double_backward(grad_y, x, weight, y, mean, rstd,
                                                   grad_weight, grad_bias, gg_x, gg_weight,
                                                   gg_bias)
        return d_grad_y, d_x, d_weight, None, None, None, None


def batch_norm_relu(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """``relu(batch_norm(x))`` with the batch's statistics and a fast second derivative.

    x (N, C, H, W); weight, bias (C,).
    """
    return _BatchNormReLU.apply(x, weight, bias, eps)[0]
