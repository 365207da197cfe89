"""Models for the functional core.

``MLP`` and the policies accept *stacked* parameters (every tensor with a
leading task dimension T) through ``metarl.functional.call``: each linear
layer becomes one batched matmul over tasks, so a single call evaluates T
tasks with T parameter sets. Inputs are then shaped (T, ..., features).

``Conv4`` uses batch statistics in both the inner and the outer loop (no
running statistics), as the original MAML. It takes stacked parameters too
(x then (T, N, C, H, W)): one grouped convolution per layer, with the fast
second derivatives of ``metarl.conv_ops``. With one parameter set its batch
norm is written with plain tensor ops, so that ``torch.func.vmap`` over tasks
stays exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, distributions, nn

from metarl import conv_ops


class ReLU(nn.Module):
    """ReLU as x times its constant 0/1 mask: same values and derivatives as ``nn.ReLU``.

    Why: differentiating ``nn.ReLU``'s backward (Hessian-vector products, MAML's
    second order) allocates and adds zero tensors the size of every activation;
    a constant mask has no such term. Fisher-vector products through the
    adaptation get about 30% faster (measured, 2D navigation batch).
    """

    def forward(self, x: Tensor) -> Tensor:
        return x * (x > 0).to(x.dtype)


ACTIVATIONS = {"relu": ReLU, "tanh": nn.Tanh}


def linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Linear layer for shared or stacked weights.

    weight (out, in), bias (out,): x (..., in) -> (..., out).
    weight (T, out, in), bias (T, out): x (T, ..., in) -> (T, ..., out).
    """
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    num_tasks = weight.shape[0]
    flat = x.reshape(num_tasks, -1, x.shape[-1])
    out = torch.baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2))
    return out.reshape(*x.shape[:-1], weight.shape[1])


class MLP(nn.Module):
    """Fully connected network: in -> hidden... -> out, activation between layers."""

    def __init__(self, in_dim: int, out_dim: int, hidden: tuple[int, ...] = (64, 64),
                 activation: str = "relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        sizes = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.activation = ACTIVATIONS[activation]()

    @property
    def feature_dim(self) -> int:
        """Size of the last hidden layer (the head's input)."""
        return self.layers[-1].in_features

    def forward(self, x: Tensor, features_only: bool = False) -> Tensor:
        """(..., in) -> (..., out), or the last hidden features (..., feature_dim)."""
        for i, layer in enumerate(self.layers):
            if features_only and i == len(self.layers) - 1:
                return x
            x = linear(x, layer.weight, layer.bias)
            if i < len(self.layers) - 1:
                x = self.activation(x)
        return x


def xavier_init_(module: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases for every linear layer in ``module``, in
    place: the init of the MAML paper's policies (rllab's ``XavierUniformInitializer``,
    as pytorch-maml-rl). Other parameters (a policy's log-std) are left as they are.
    With zero biases the initial mean is 0 at a zero observation, e.g. navigation's start."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return module


class GaussianPolicy(nn.Module):
    """Diagonal Gaussian over actions: mean from an MLP, state-independent learned log-std.

    forward(obs (..., obs_dim)) -> Independent(Normal) with batch shape (...,) and
    event shape (act_dim,), so ``log_prob`` already sums over action dimensions.
    With stacked parameters, obs is (T, ..., obs_dim).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (64, 64),
                 activation: str = "relu", init_std: float = 1.0):
        super().__init__()
        self.mean = MLP(obs_dim, act_dim, hidden, activation)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))

    def forward(self, obs: Tensor) -> distributions.Distribution:
        mean = self.mean(obs)
        log_std = self.log_std
        if log_std.dim() == 2:  # stacked (T, act_dim): broadcast over the batch dims
            log_std = log_std.reshape(log_std.shape[0], *[1] * (mean.dim() - 2), -1)
        std = log_std.exp().expand_as(mean)
        # No argument validation: a NaN candidate in the line search must come out as
        # a NaN loss (rejected), not an exception; validation also costs ~35 us a call.
        return distributions.Independent(
            distributions.Normal(mean, std, validate_args=False), 1, validate_args=False)


class CategoricalPolicy(nn.Module):
    """Categorical over discrete actions with logits from an MLP."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: tuple[int, ...] = (64, 64),
                 activation: str = "relu"):
        super().__init__()
        self.logits = MLP(obs_dim, num_actions, hidden, activation)

    def forward(self, obs: Tensor) -> distributions.Distribution:
        return distributions.Categorical(logits=self.logits(obs), validate_args=False)


def batch_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """Batch norm with the current batch's statistics, in plain ops (exact under vmap).

    x (N, C, H, W); weight, bias (C,).
    """
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    x = (x - mean) * torch.rsqrt(var + eps)
    return x * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


class Conv4(nn.Module):
    """The MAML paper's 4-block convolutional classifier.

    Each block: 3x3 conv -> batch norm (batch statistics) -> ReLU, then either
    stride 2 in the conv (``pool=False``, the paper's Omniglot net, 64 filters)
    or a 2x2 max-pool (``pool=True``, the MiniImageNet net, 32 filters).
    forward(x (N, C, H, W)) -> logits (N, num_classes).
    """

    def __init__(self, in_channels: int, num_classes: int, filters: int = 64,
                 pool: bool = False, image_size: int = 28):
        super().__init__()
        self.pool = pool
        self.convs = nn.ModuleList()
        self.norm_weights = nn.ParameterList()
        self.norm_biases = nn.ParameterList()
        channels, size = in_channels, image_size
        for _ in range(4):
            self.convs.append(nn.Conv2d(channels, filters, 3, stride=1 if pool else 2, padding=1))
            self.norm_weights.append(nn.Parameter(torch.ones(filters)))
            self.norm_biases.append(nn.Parameter(torch.zeros(filters)))
            channels, size = filters, (size // 2 if pool else (size + 1) // 2)
        # Strided nets average the final map (as the paper's code); pooled nets flatten it.
        self.feature_dim = filters if not pool else filters * size * size
        self.head = nn.Linear(self.feature_dim, num_classes)

    def forward(self, x: Tensor, features_only: bool = False) -> Tensor:
        """Logits (N, num_classes), or the head's input features (N, feature_dim).

        With stacked parameters (T, ...): x (T, N, C, H, W) -> (T, N, num_classes).
        """
        if self.convs[0].weight.dim() == 5:
            return self._forward_stacked(x, features_only)
        for conv, w, b in zip(self.convs, self.norm_weights, self.norm_biases):
            x = F.conv2d(x, conv.weight, conv.bias, stride=conv.stride, padding=conv.padding)
            x = F.relu(batch_norm(x, w, b))
            if self.pool:
                x = F.max_pool2d(x, 2)
        x = x.flatten(1) if self.pool else x.mean(dim=(2, 3))
        if features_only:
            return x
        return F.linear(x, self.head.weight, self.head.bias)

    def _forward_stacked(self, x: Tensor, features_only: bool) -> Tensor:
        """All tasks in one pass: task t's channels are group t of a grouped convolution,
        laid out (N, T*C, H, W), so batch norm per channel is per task, and each layer
        is one call of ``metarl.conv_ops`` (fast second derivatives)."""
        num_tasks, n = x.shape[:2]
        h = x.transpose(0, 1).flatten(1, 2)
        for conv, w, b in zip(self.convs, self.norm_weights, self.norm_biases):
            h = conv_ops.conv2d(h, conv.weight.flatten(0, 1), conv.bias.flatten(),
                                conv.stride[0], conv.padding[0], groups=num_tasks)
            h = conv_ops.batch_norm_relu(h, w.flatten(), b.flatten())
            if self.pool:
                h = F.max_pool2d(h, 2)
        h = h.unflatten(1, (num_tasks, -1))  # (N, T, C, h, w)
        h = h.flatten(2) if self.pool else h.mean(dim=(3, 4))
        features = h.transpose(0, 1)  # (T, N, feature_dim)
        if features_only:
            return features
        return linear(features, self.head.weight, self.head.bias)

    @staticmethod
    def head_names() -> list[str]:
        return ["head.weight", "head.bias"]
