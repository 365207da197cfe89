"""Why 5-shot sinusoid adaptation diverges: the curvature along the adaptation path.

Gradient descent with step alpha on a quadratic diverges along any direction whose
Hessian eigenvalue exceeds 2 / alpha (200 at the paper's alpha = 0.01). For a
trained run, on the evaluation's own held-out tasks (same seed and draws as
``metarl evaluate``), this measures each task's largest Hessian eigenvalue of the
K-shot support loss (power iteration on Hessian-vector products) before and after
each inner step, next to that task's query MSE.

    python experiments/sinusoid_sharpness.py runs/sinusoid --shots 5 --steps 10

Prints, per step: the share of tasks above 2 / alpha, the median and mean query
MSE, and the mean MSE of the tasks that start above and below 2 / alpha.
``--inner-lr`` and ``--later-factor`` evaluate the same tasks with other step sizes
(as ``metarl evaluate`` takes them).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from metarl.evaluate import load_run, step_sizes
from metarl.functional import detach_params, expand_params, params_of
from metarl.supervised import sinusoid
from metarl.supervised.meta_step import mse_per_task
from metarl.supervised.train import load_learner


def largest_eigenvalues(loss_fn, params: dict, iterations: int = 100,
                        seed: int = 0) -> np.ndarray:
    """Per task, the Hessian eigenvalue of largest magnitude: params stacked (T, ...) -> (T,).

    ``loss_fn(params)`` is the sum of independent per-task losses, so its Hessian
    is block diagonal and one Hessian-vector product serves every task.
    """
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    grads = torch.autograd.grad(loss_fn(params), list(params.values()), create_graph=True)
    gen = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params.values()]

    def per_task_norm(vs):
        return torch.sqrt(sum(x.flatten(1).pow(2).sum(1) for x in vs))  # (T,)

    def normalised(vs):
        n = per_task_norm(vs).clamp_min(1e-30)
        return [x / n.view(-1, *[1] * (x.dim() - 1)) for x in vs]

    v = normalised(v)
    for _ in range(iterations):
        hv = torch.autograd.grad(grads, list(params.values()), v, retain_graph=True)
        rayleigh = sum((a * b).flatten(1).sum(1) for a, b in zip(v, hv))
        v = normalised([h.detach() for h in hv])
    return rayleigh.detach().numpy()


def sharpness_curves(run_dir: str, shots: int, steps: int, num_tasks: int, seed: int,
                     query_points: int, inner_lr: float | None, later_factor: float) -> dict:
    config, state = load_run(run_dir, "checkpoint.pt")
    if config.kind != "sinusoid" or config.method not in ("maml", "fomaml", "reptile"):
        raise SystemExit("sinusoid_sharpness: needs a sinusoid run with one scalar inner rate")
    model, _ = load_learner(run_dir, config, state)
    alpha = config.inner_lr if inner_lr is None else inner_lr
    rng = np.random.default_rng([seed, shots])  # the evaluation's draws, in its order
    tasks = sinusoid.sample_sinusoids(rng, num_tasks, config.amplitude_range, config.phase_range)
    support = sinusoid.sinusoid_points(rng, tasks, shots, config.input_range)
    query = sinusoid.sinusoid_points(rng, tasks, query_points, config.input_range)
    params = detach_params(expand_params(params_of(model), num_tasks))
    support_loss = lambda p: mse_per_task(model, p, support).sum()
    rates = step_sizes(alpha, steps, later_factor) + [alpha * later_factor]
    eigen, mse = [], []
    for rate in rates:  # the curvature met by the next step, of size rate
        eigen.append(largest_eigenvalues(support_loss, params))
        with torch.no_grad():
            mse.append(mse_per_task(model, params, query).numpy())
        p = {k: v.detach().requires_grad_() for k, v in params.items()}
        grads = torch.autograd.grad(support_loss(p), list(p.values()))
        params = {k: v.detach() - rate * g for (k, v), g in zip(p.items(), grads)}
    return {"run_dir": run_dir, "iteration": int(state["iteration"]), "alpha": alpha,
            "rates": rates, "shots": shots, "eigen": np.stack(eigen, 1),
            "mse": np.stack(mse, 1)}


def summary(result: dict) -> list[dict]:
    """One row per step: share above 2 / (next step size), MSE median / mean, split by
    whether a task starts above 2 / alpha."""
    eigen, mse = result["eigen"], result["mse"]
    sharp = eigen[:, 0] > 2.0 / result["alpha"]
    rows = []
    for s in range(eigen.shape[1]):
        rows.append({
            "step": s,
            "next_rate": result["rates"][s],
            "share_above": float(np.mean(eigen[:, s] > 2.0 / result["rates"][s])),
            "eigen_median": float(np.median(eigen[:, s])),
            "eigen_max": float(np.max(eigen[:, s])),
            "mse_median": float(np.median(mse[:, s])),
            "mse_mean": float(np.mean(mse[:, s])),
            "mse_mean_sharp_start": float(np.mean(mse[sharp, s])) if sharp.any() else None,
            "mse_mean_flat_start": float(np.mean(mse[~sharp, s])),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--query-points", type=int, default=100)
    parser.add_argument("--inner-lr", type=float, help="first step size (default: the run's)")
    parser.add_argument("--later-factor", type=float, default=1.0,
                        help="later steps' size relative to the first (default 1)")
    parser.add_argument("--json", help="write the per-step rows here")
    args = parser.parse_args()
    result = sharpness_curves(args.run_dir, args.shots, args.steps, args.tasks, args.seed,
                              args.query_points, args.inner_lr, args.later_factor)
    rows = summary(result)
    print(f"{args.run_dir} (iteration {result['iteration']}), {args.shots}-shot, "
          f"alpha {result['alpha']} (later x{args.later_factor}), {args.tasks} tasks; "
          f">2/a: share of tasks whose largest eigenvalue exceeds 2 / the next step size")
    print("step  >2/a  eig-median  eig-max   mse-median  mse-mean   mean(start>2/a)  "
          "mean(start<=2/a)")
    for r in rows:
        sharp = "-" if r["mse_mean_sharp_start"] is None else f"{r['mse_mean_sharp_start']:.4g}"
        print(f"{r['step']:>4}  {r['share_above']:5.1%}  {r['eigen_median']:10.1f}  "
              f"{r['eigen_max']:8.1f}  {r['mse_median']:10.4f}  {r['mse_mean']:9.4g}  "
              f"{sharp:>15}  {r['mse_mean_flat_start']:16.4g}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"run_dir": args.run_dir, "iteration": result["iteration"],
                       "alpha": result["alpha"], "shots": args.shots, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
