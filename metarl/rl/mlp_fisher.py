"""Curvature products written out for metarl's MLP policies, stacked over tasks.

The exact Fisher product through the adaptation, J^T F' J (``rl.fisher``), needs
Hessian-vector products of the inner loss at every point of the adaptation and
the Fisher of the adapted policies. By double backward every product redoes the
forward and backward passes and allocates all their temporaries anew. Here the
point is fixed during conjugate gradient, so its activations, their slopes and
the inner loss's backward pass are computed once (``MLPPoint``), and each product
is Pearlmutter's R-operator written out: a forward tangent and the tangent of the
backward pass, all batched matmuls over tasks into reused buffers. On the
navigation batch (20 tasks x 2000 steps, 100-100) one J^T F' J v costs 16 large
matmuls: 6 per inner Hessian product (2 forward, 4 backward) x 2, and 4 for F'
as Gauss-Newton J_out^T M J_out (exact at the point where the KL's gradient in
the distribution's parameters vanishes).

Supported: ``models.GaussianPolicy`` (state-independent log-std) and
``models.CategoricalPolicy`` on an ``models.MLP`` with ReLU or tanh; inner
objectives REINFORCE, LVC and DiCE. ``mlp_layout`` returns None for anything
else, and ``rl.fisher`` then uses autograd. The tests check every case against
the third-order autograd product.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metarl import models
from metarl.functional import Params
from metarl.rl.episodes import Episodes
from metarl.rl.losses import dice_costs


@dataclass(frozen=True)
class MLPLayout:
    """Where an MLP policy keeps its parameters, by name."""

    weights: tuple[str, ...]
    biases: tuple[str, ...]
    tanh: bool  # else ReLU
    log_std: str | None  # Gaussian head; None: Categorical logits


def mlp_layout(policy: nn.Module) -> MLPLayout | None:
    """The layout of a supported policy, or None (then use autograd)."""
    if isinstance(policy, models.GaussianPolicy):
        mlp, prefix, log_std = policy.mean, "mean", "log_std"
    elif isinstance(policy, models.CategoricalPolicy):
        mlp, prefix, log_std = policy.logits, "logits", None
    else:
        return None
    if type(mlp) is not models.MLP or type(mlp.activation) not in (models.ReLU, nn.ReLU,
                                                                    nn.Tanh):
        return None
    layers = range(len(mlp.layers))
    return MLPLayout(tuple(f"{prefix}.layers.{i}.weight" for i in layers),
                     tuple(f"{prefix}.layers.{i}.bias" for i in layers),
                     isinstance(mlp.activation, nn.Tanh), log_std)


class Buffers:
    """Scratch tensors reused across products, so the CG loop maps no new memory."""

    def __init__(self):
        self._store: dict[tuple, Tensor] = {}

    def __call__(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        key = (name, shape, like.dtype, like.device)
        if key not in self._store:
            self._store[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return self._store[key]


def valid_steps(mask: Tensor) -> Tensor:
    """Valid steps per task, (T, 1, 1), at least 1: the inner losses' normaliser."""
    return mask.sum(dim=(1, 2), keepdim=True).clamp(min=1)


def _dice_costs(advantages: Tensor, mask: Tensor, count: Tensor) -> Tensor:
    """``rl.losses.dice_costs`` of the valid steps over the task's valid steps, as its loss."""
    return dice_costs(advantages, mask) * mask / count


def _reverse_cumsum(x: Tensor) -> Tensor:
    """sum_{t' >= t} x_t' along the last dim."""
    return x.flip(-1).cumsum(-1).flip(-1)


def step_weights(objective: str, advantages: Tensor, mask: Tensor, count: Tensor) -> Tensor:
    """alpha (T, E, H): the inner loss's gradient is -sum alpha_t grad log pi_t.

    As ``rl.losses``: per-task means over the ``count`` valid steps (``valid_steps``);
    DiCE weighs each action by the costs it caused, summed from t on.
    """
    if objective == "dice":
        return mask * _reverse_cumsum(_dice_costs(advantages, mask, count))
    return advantages * mask / count


def score_curvature(objective: str, weights: Tensor, mask: Tensor, advantages: Tensor,
                    count: Tensor, score_tangent: Tensor) -> Tensor | None:
    """beta (T, E, H) of the Hessian's score products -sum beta_t grad log pi_t, given
    score_tangent = grad log pi_t . v (T, E, H); None for REINFORCE (no such term).

    LVC's Hessian adds -sum alpha_t g_t g_t^T (g_t = grad log pi_t); DiCE's
    -sum c_t G_t G_t^T, G_t the causal sum of the scores up to t.
    """
    if objective == "reinforce":
        return None
    if objective == "lvc":
        return weights * score_tangent
    causal = torch.cumsum(mask * score_tangent, -1)
    return mask * _reverse_cumsum(_dice_costs(advantages, mask, count) * causal)


class MLPPoint:
    """An MLP policy at one stacked point (T, ...) on one batch of observations
    (T, N, obs_dim), with its forward pass cached: the point of each product."""

    def __init__(self, layout: MLPLayout, params: Params, obs: Tensor, buffers: Buffers):
        self.layout, self.buffers = layout, buffers
        self.weights = [params[k].detach() for k in layout.weights]  # (T, out, in)
        self.biases = [params[k].detach() for k in layout.biases]  # (T, out)
        self.log_std = None if layout.log_std is None else params[layout.log_std].detach()
        num_tasks = self.weights[0].shape[0]
        x = obs.reshape(num_tasks, -1, obs.shape[-1])
        self.inputs, self.slopes, self.bends = [x], [], []  # per layer; slopes/bends hidden
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
            if i == len(self.weights) - 1:
                self.output = z  # (T, N, out): the Gaussian's mean or the logits
                break
            if layout.tanh:
                x = torch.tanh(z)
                slope = 1 - x * x
                self.bends.append(-2 * x * slope)
            else:
                slope = (z > 0).to(z.dtype)
                x = z * slope
            self.slopes.append(slope)
            self.inputs.append(x)
        self.pre_grads: list[Tensor] = []  # of a recorded backward pass (the inner loss)
        self.bend_grads: list[Tensor | None] = []

    def _buffer(self, name: str, i: int, like: Tensor, width: int) -> Tensor:
        return self.buffers(f"{name}{i}", (*like.shape[:2], width), like)

    def forward_tangent(self, tangent: Params) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """Tangents of every layer's input (from layer 1 on), of its pre-activation
        (tanh only) and of the output, for ``tangent`` (stacked, by parameter name)."""
        input_tangents, pre_tangents = [], []
        h_tangent = None
        for i, (w, name_w, name_b) in enumerate(zip(self.weights, self.layout.weights,
                                                    self.layout.biases)):
            z_tangent = torch.bmm(self.inputs[i], tangent[name_w].transpose(1, 2),
                                  out=self._buffer("z", i, self.inputs[i], w.shape[1]))
            if h_tangent is not None:
                z_tangent.baddbmm_(h_tangent, w.transpose(1, 2))
            z_tangent.add_(tangent[name_b].unsqueeze(1))
            if i == len(self.weights) - 1:
                return input_tangents, pre_tangents, z_tangent
            if self.layout.tanh:  # the backward's second-derivative term needs z's tangent
                pre_tangents.append(z_tangent)
                h_tangent = torch.mul(z_tangent, self.slopes[i],
                                      out=self._buffer("h", i, z_tangent, w.shape[1]))
            else:
                h_tangent = z_tangent.mul_(self.slopes[i])
            input_tangents.append(h_tangent)
        raise AssertionError("unreachable")

    def backward(self, output_grad: Tensor, tangent: Params | None = None,
                 forward: tuple[list[Tensor], list[Tensor]] | None = None,
                 record: bool = False) -> Params:
        """Gradients of sum(output_grad * output) by weight and bias name.

        With ``tangent`` and its ``forward`` tangents (``forward_tangent``'s first
        two lists), the tangent of the recorded backward pass instead: output_grad
        is then the tangent of the output gradient. record: keep this pass's
        pre-activation gradients (and, for tanh, input gradients times the
        activation's second derivative) for later tangents.
        """
        layers = len(self.weights)
        grads, g = {}, output_grad
        pre_grads, bend_grads = [None] * layers, [None] * (layers - 1)
        for i in reversed(range(layers)):
            name_w, name_b = self.layout.weights[i], self.layout.biases[i]
            pre_grads[i] = g
            grads[name_w] = torch.bmm(g.transpose(1, 2), self.inputs[i])
            grads[name_b] = g.sum(dim=1)
            if tangent is not None and i > 0:
                grads[name_w].baddbmm_(self.pre_grads[i].transpose(1, 2), forward[0][i - 1])
            if i == 0:
                break
            h_grad = torch.bmm(g, self.weights[i], out=None if record else
                               self._buffer("gh", i, g, self.weights[i].shape[2]))
            if tangent is not None:
                h_grad.baddbmm_(self.pre_grads[i], tangent[name_w])
            if record and self.layout.tanh:
                bend_grads[i - 1] = self.bends[i - 1] * h_grad
            g = h_grad * self.slopes[i - 1] if record else h_grad.mul_(self.slopes[i - 1])
            if tangent is not None and self.layout.tanh:
                g.addcmul_(self.bend_grads[i - 1], forward[1][i - 1])
        if record:
            self.pre_grads, self.bend_grads = pre_grads, bend_grads
        return grads


class _Head:
    """The policy's distribution on the cached outputs of an ``MLPPoint``:
    log pi's derivatives in the outputs (and log-std), per step (T, N, ...)."""

    def __init__(self, point: MLPPoint, actions: Tensor):
        self.gaussian = point.log_std is not None
        out = point.output
        if self.gaussian:
            self.inv_var = torch.exp(-2 * point.log_std).unsqueeze(1)  # (T, 1, A)
            diff = actions.reshape(out.shape) - out
            self.score = diff * self.inv_var  # d log pi / d mean
            self.log_std_score = diff * self.score - 1  # d log pi / d log_std
        else:
            self.probs = torch.softmax(out, dim=-1)
            onehot = torch.nn.functional.one_hot(actions.reshape(out.shape[:2]), out.shape[-1])
            self.score = onehot.to(out.dtype) - self.probs  # d log pi / d logits

    def fisher(self, out_tangent: Tensor) -> Tensor:
        """M u per step for the outputs' block (the Gaussian's is diagonal)."""
        if self.gaussian:
            return out_tangent * self.inv_var
        p_dot = (self.probs * out_tangent).sum(-1, keepdim=True)
        return self.probs * (out_tangent - p_dot)

    def score_tangent(self, out_tangent: Tensor, log_std_tangent: Tensor | None) -> Tensor:
        """(grad log pi) . v per step, (T, N)."""
        tangent = (self.score * out_tangent).sum(-1)
        if self.gaussian:
            tangent = tangent + (self.log_std_score * log_std_tangent.unsqueeze(1)).sum(-1)
        return tangent


class InnerHessian:
    """v -> H v, H the Hessian of an inner loss (``rl.losses``: REINFORCE, LVC, DiCE)
    at stacked ``params`` on ``episodes`` with ``advantages``, per task (T, ...).

    count: the valid steps per task (``valid_steps``) when ``episodes`` are a slice of
    whole episodes of the loss's batch (``rl.episode_slices``); default: of these."""

    def __init__(self, layout: MLPLayout, params: Params, episodes: Episodes,
                 advantages: Tensor, objective: str, buffers: Buffers,
                 count: Tensor | None = None):
        self.point = MLPPoint(layout, params, episodes.obs, buffers)
        self.head = _Head(self.point, episodes.actions)
        self.objective, self.mask, self.advantages = objective, episodes.mask, advantages
        self.count = valid_steps(episodes.mask) if count is None else count
        self.weights = step_weights(objective, advantages, episodes.mask, self.count)
        self.alpha = self.weights.reshape(*self.head.score.shape[:2], 1)  # (T, N, 1)
        self.point.backward(-self.alpha * self.head.score, record=True)

    def __call__(self, vector: Params) -> Params:
        point, head, alpha = self.point, self.head, self.alpha
        log_std_v = None if point.log_std is None else vector[point.layout.log_std]
        input_t, pre_t, out_t = point.forward_tangent(vector)
        if head.gaussian:  # H log pi in (mean, log_std), negated by the loss
            out_grad_t = alpha * (out_t * head.inv_var + 2 * head.score
                                  * log_std_v.unsqueeze(1))
        else:
            out_grad_t = alpha * head.fisher(out_t)
        score_t = head.score_tangent(out_t, log_std_v)
        beta = score_curvature(self.objective, self.weights, self.mask, self.advantages,
                               self.count, score_t.reshape(self.mask.shape))
        if beta is not None:
            beta = beta.reshape(alpha.shape)
            out_grad_t = out_grad_t - beta * head.score
        grads = point.backward(out_grad_t, vector, (input_t, pre_t))
        if head.gaussian:
            log_std_t = alpha * (2 * head.score * out_t + 2 * (head.log_std_score + 1)
                                 * log_std_v.unsqueeze(1))
            if beta is not None:
                log_std_t = log_std_t - beta * head.log_std_score
            grads[point.layout.log_std] = log_std_t.sum(dim=1)
        return grads


class PolicyFisher:
    """v -> F v, F the Hessian of ``rl.losses.mean_kl`` from the policies at stacked
    ``params`` on ``episodes`` (the Fisher there: J_out^T M J_out), per task (T, ...).
    count: as ``InnerHessian``'s; num_tasks: the tasks the KL averages over, when
    ``episodes`` are some of them (``rl.episode_slices``; default: these)."""

    def __init__(self, layout: MLPLayout, params: Params, episodes: Episodes,
                 buffers: Buffers, count: Tensor | None = None, num_tasks: int | None = None):
        self.point = MLPPoint(layout, params, episodes.obs, buffers)
        self.head = _Head(self.point, episodes.actions)
        mask = episodes.mask
        count = valid_steps(mask) if count is None else count
        num_tasks = mask.shape[0] if num_tasks is None else num_tasks
        weights = mask / (count * num_tasks)  # mean over valid steps, then tasks
        self.weights = weights.reshape(*self.head.score.shape[:2], 1)

    def surrogate_gradient(self, advantages: Tensor) -> Params:
        """Gradient of ``rl.losses.surrogate_loss`` at these policies when they sampled the
        episodes (every ratio 1): a policy gradient with weights A / (valid steps * T)."""
        weights = self.weights * advantages.reshape(self.weights.shape)
        grads = self.point.backward(-weights * self.head.score)
        if self.head.gaussian:
            grads[self.point.layout.log_std] = (-weights * self.head.log_std_score).sum(dim=1)
        return grads

    def __call__(self, vector: Params) -> Params:
        point = self.point
        _, _, out_t = point.forward_tangent(vector)
        grads = point.backward(self.weights * self.head.fisher(out_t))
        if self.head.gaussian:  # log-std block: 2 per action dim and valid step
            grads[point.layout.log_std] = 2 * vector[point.layout.log_std] \
                * self.weights.sum(dim=1)
        return grads
