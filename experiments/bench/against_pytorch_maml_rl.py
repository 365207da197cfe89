"""Seconds per meta-iteration: metarl against pytorch-maml-rl, in one run.

The peer (tristandeleu/pytorch-maml-rl, the most used PyTorch MAML-RL port) runs its
own ``train.py`` loop (``MultiTaskSampler`` with one worker process, ``MAMLTRPO.step``)
at metarl's settings (``--task``): ``navigation`` is ``navigation-2d.yaml``, the paper's
20 tasks x 20 episodes, horizon 100, 100-100 ReLU policy, one inner step of 0.1, TRPO max
KL 0.01, 10 CG iterations, 15 line-search steps; ``halfcheetah`` is
``halfcheetah-vel.yaml`` at the common 100-step horizon (40 tasks x 20 episodes,
100-100 ReLU), the peer's ``HalfCheetahVel-v2`` with its own action scaling. metarl runs
real meta-iterations of its training loop (``meta_iteration.py``'s default variant). For
HalfCheetah it also prints the bare engine's time for the iteration's env steps. Both on
the CPUs this process may use (pin with ``taskset``), one torch thread each, alternated
(peer, metarl, peer, metarl) so that drift of the machine hits both alike; each side's
first iterations are warm-up.

The peer needs its own environment: a checkout, and a Python with gym 0.17 and numpy
< 2 (its env and vector-env code predate gym 0.26 and Gymnasium). Its one line that no
longer runs on torch 2 (``torch.lstsq``, removed) must be ported first:
``torch.linalg.lstsq(XT_X + reg_coeff * self._eye, XT_y).solution`` in
``maml_rl/baseline.py``. Its MuJoCo envs subclass gym 0.17's, which need mujoco-py
(MuJoCo 2.1 binaries, not installable here): ``peer_shim/mujoco_py.py`` stands in for it
on the official ``mujoco`` bindings (install ``mujoco`` in the peer's Python), so the
peer steps the same C engine, one ``mj_step`` call per frame as mujoco-py does.

    python -m venv /tmp/peer && /tmp/peer/bin/pip install torch==2.13.0 "numpy<2" \\
        gym==0.17.3 pyyaml tqdm mujoco==4.0.0
    python experiments/bench/against_pytorch_maml_rl.py --peer-dir PATH \\
        --peer-python /tmp/peer/bin/python [--task halfcheetah] [--iterations 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from meta_iteration import CASES, run_variant  # experiments/bench/meta_iteration.py
from sampler import ceiling_rate  # experiments/bench/sampler.py

from metarl.config import load_config
from metarl.rl.families import make_family

SHIM = Path(__file__).resolve().parent / "peer_shim"

# pytorch-maml-rl's train.py loop, timed per iteration; prints one JSON line.
PEER_LOOP = """
import json, sys, time, gym, torch
import maml_rl.envs
from maml_rl.baseline import LinearFeatureBaseline
from maml_rl.metalearners import MAMLTRPO
from maml_rl.samplers import MultiTaskSampler
from maml_rl.utils.helpers import get_input_size, get_policy_for_env
torch.set_num_threads(1)
config = json.load(open(sys.argv[1]))
warmup, iterations = int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
env = gym.make(config["env-name"], **config["env-kwargs"]); env.close()
policy = get_policy_for_env(env, hidden_sizes=config["hidden-sizes"],
                            nonlinearity=config["nonlinearity"])
policy.share_memory()
sampler = MultiTaskSampler(config["env-name"], env_kwargs=config["env-kwargs"],
                           batch_size=config["fast-batch-size"], policy=policy,
                           baseline=LinearFeatureBaseline(get_input_size(env)), env=env,
                           seed=0, num_workers=1)
learner = MAMLTRPO(policy, fast_lr=config["fast-lr"], first_order=False, device="cpu")
times = []
for _ in range(warmup + iterations):
    start = time.perf_counter()
    tasks = sampler.sample_tasks(num_tasks=config["meta-batch-size"])
    futures = sampler.sample_async(tasks, num_steps=1, fast_lr=config["fast-lr"],
                                   gamma=config["gamma"], gae_lambda=config["gae-lambda"],
                                   device="cpu")
    learner.step(*futures, max_kl=config["max-kl"], cg_iters=config["cg-iters"],
                 cg_damping=config["cg-damping"], ls_max_steps=config["ls-max-steps"],
                 ls_backtrack_ratio=config["ls-backtrack-ratio"])
    sampler.sample_wait(futures)
    times.append(time.perf_counter() - start)
sampler.close()
print(json.dumps(times[warmup:]))
"""


def peer_config(task: str) -> dict:
    """metarl's settings for ``task`` (a ``meta_iteration.CASES`` key) in pytorch-maml-rl's
    config keys."""
    path, overrides = CASES[task]
    c = load_config(path, overrides)
    env = ({"env-name": "2DNavigation-v0", "env-kwargs": {"low": -0.5, "high": 0.5}}
           if task == "navigation" else
           {"env-name": "HalfCheetahVel-v2", "env-kwargs": {
               "low": 0.0, "high": 2.0, "normalization_scale": 10.0,
               "max_episode_steps": c.horizon}})
    return {**env, "hidden-sizes": list(c.hidden_sizes), "nonlinearity": c.activation,
            "fast-lr": c.inner_lr, "fast-batch-size": c.episodes_per_task,
            "meta-batch-size": c.meta_batch_size, "gamma": c.gamma, "gae-lambda": c.gae_lambda,
            "max-kl": c.max_kl, "cg-iters": c.cg_iters, "cg-damping": c.cg_damping,
            "ls-max-steps": c.line_search_steps, "ls-backtrack-ratio": c.line_search_ratio}


def engine_seconds(task: str) -> float | None:
    """Seconds bare MuJoCo (``mujoco.batch``, one thread, no policy) takes for the
    2 x T x E x H env steps of one meta-iteration; None for navigation (no engine)."""
    if task == "navigation":
        return None
    path, overrides = CASES[task]
    config = load_config(path, [*overrides, "threads=1"])
    family = make_family(config)
    tasks = family.sample_tasks(np.random.default_rng(0), config.meta_batch_size)
    env = family.make_vector_env(tasks, config.episodes_per_task)
    steps = env.num_envs * config.horizon
    rate = ceiling_rate(env.model, env.num_envs, config.horizon, threads=1,
                        frame_skip=env.frame_skip)
    env.close()
    return 2 * steps / rate


def peer_seconds(peer_python: str, peer_dir: Path, config_file: str, warmup: int,
                 iterations: int) -> list[float]:
    path = os.pathsep.join(filter(None, [str(SHIM), os.environ.get("PYTHONPATH")]))
    done = subprocess.run([peer_python, "-c", PEER_LOOP, config_file, str(warmup),
                           str(iterations)], cwd=peer_dir, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": path})
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-4:])
        raise SystemExit(f"pytorch-maml-rl failed:\n{tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-dir", required=True, type=Path,
                        help="a checkout of tristandeleu/pytorch-maml-rl")
    parser.add_argument("--peer-python", required=True, help="its Python (gym 0.17, numpy<2)")
    parser.add_argument("--task", choices=sorted(CASES), default="navigation")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="the peer's warm-up iterations")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["structured"],
                        choices=["structured", "bfloat16"],
                        help="metarl's outer step: float32 (structured) and/or bfloat16 products")
    args = parser.parse_args()
    if not (args.peer_dir / "maml_rl" / "metalearners" / "maml_trpo.py").is_file():
        parser.error(f"not a pytorch-maml-rl checkout: {args.peer_dir}")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(peer_config(args.task), f)
    peer, ours = [], {variant: [] for variant in args.variants}
    for r in range(args.rounds):
        peer += peer_seconds(args.peer_python, args.peer_dir, f.name, args.warmup,
                             args.iterations)
        peer_round = sum(peer[-args.iterations:]) / args.iterations
        line = f"round {r + 1}: pytorch-maml-rl {peer_round:.3f} s"
        for variant, seconds in ours.items():
            seconds.append(run_variant(args.task, variant, 1, args.iterations)["total"])
            line += f", metarl ({variant}) {seconds[-1]:.3f} s"
        print(line + " per iteration", flush=True)
    Path(f.name).unlink()
    peer_mean = sum(peer) / len(peer)
    engine = engine_seconds(args.task)
    print(f"{args.task} ({' '.join([CASES[args.task][0], *CASES[args.task][1]])}: "
          f"{json.dumps(peer_config(args.task))}), 1 thread each, "
          f"{args.rounds} x {args.iterations} iterations after warm-up")
    for variant, seconds in ours.items():
        ours_mean = sum(seconds) / len(seconds)
        print(f"  pytorch-maml-rl {peer_mean:.3f} s, metarl ({variant}) {ours_mean:.3f} s per "
              f"meta-iteration: pytorch-maml-rl takes {peer_mean / ours_mean:.2f}x metarl's time")
        if engine is not None:
            print(f"    bare MuJoCo for the iteration's env steps (mujoco.batch, 1 thread, no "
                  f"policy): {engine:.3f} s; metarl {ours_mean / engine:.2f}x it, "
                  f"pytorch-maml-rl {peer_mean / engine:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
