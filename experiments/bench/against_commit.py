"""Seconds per meta-iteration of a config: this checkout against an earlier commit's code.

The ratio an issue's "N x faster than today" asks for: the same training job run by
the code of ``--rev`` (checked out into a temporary git worktree) and by this checkout,
one after the other in this run, on the same cores. Each side trains its own version of
the config (same path in its tree) with the same ``--set`` overrides, from the current
folder, so relative data paths resolve alike.

Per iteration = (T(n2) - T(n1)) / (n2 - n1) of two trainings of n1 and n2 iterations:
start-up, data loading, compilation on the first iteration and the final checkpoint
cancel out. Each side first trains n1 iterations untimed, so that disk caches (files,
torch.compile's kernels) are warm for both of its timed runs. Sides alternate (old,
new, old, new, ...) so that drift of the machine hits both alike.

    python experiments/bench/against_commit.py --rev 592217c \
        --config experiments/configs/omniglot-small-20w1s.yaml --iterations 3 13 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Runs the checkout's CLI with that checkout first on the path, and checks that the
# imported package is the checkout's (an editable install must not shadow it).
TRAIN = """
import sys
root = sys.argv[1]
sys.path.insert(0, root)
import metarl
assert metarl.__file__.startswith(root), (metarl.__file__, root)
from metarl.cli import main
sys.argv = ["metarl"] + sys.argv[2:]
main()
"""


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def train_seconds(root: Path, config: str, iterations: int, overrides: list[str]) -> float:
    """Wall seconds of one ``metarl train`` of ``iterations`` by the code in ``root``."""
    with tempfile.TemporaryDirectory(prefix="bench-run-") as run_dir:
        cmd = [sys.executable, "-c", TRAIN, str(root), "train", str(root / config),
               "--run-dir", run_dir, "--set", f"iterations={iterations}"]
        for override in overrides:
            cmd += ["--set", override]
        env = {**os.environ, "PYTHONPATH": str(root)}
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"training with the code of {root} failed:\n{tail}")
    return seconds


def per_iteration(root: Path, config: str, n1: int, n2: int, overrides: list[str]) -> float:
    return (train_seconds(root, config, n2, overrides)
            - train_seconds(root, config, n1, overrides)) / (n2 - n1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", required=True, help="the earlier commit (any git revision)")
    parser.add_argument("--config", required=True, help="config path, relative to the repository")
    parser.add_argument("--iterations", type=int, nargs=2, default=(3, 13), metavar=("N1", "N2"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override for both sides, as metarl train --set")
    args = parser.parse_args()
    n1, n2 = args.iterations
    if not 0 < n1 < n2:
        parser.error(f"--iterations needs 0 < N1 < N2, got {n1} {n2}")
    if not (REPO / args.config).is_file():
        parser.error(f"config not found: {REPO / args.config}")
    try:
        commit = git("rev-parse", "--verify", f"{args.rev}^{{commit}}")
    except subprocess.CalledProcessError:
        parser.error(f"not a commit here: {args.rev}")
    changed = git("status", "--porcelain", "--untracked-files=no")
    head = git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if changed else "")
    cpus = sorted(os.sched_getaffinity(0))
    print(f"config {args.config}, overrides {args.overrides or 'none'}; "
          f"iterations {n1} and {n2}; CPUs {cpus}")
    subject = git("log", "-1", "--format=%ad %s", "--date=short", commit)
    print(f"old: {commit[:10]} ({subject[:70]})")
    print(f"new: {head}")
    with tempfile.TemporaryDirectory(prefix="bench-old-") as old_dir:
        old_root = Path(old_dir) / "tree"
        git("worktree", "add", "--detach", str(old_root), commit)
        try:
            if not (old_root / args.config).is_file():
                raise SystemExit(f"{args.config} does not exist at {commit[:10]}")
            for root in (old_root, REPO):  # warm-up, untimed
                train_seconds(root, args.config, n1, args.overrides)
            rows = []
            for repeat in range(args.repeats):
                old = per_iteration(old_root, args.config, n1, n2, args.overrides)
                new = per_iteration(REPO, args.config, n1, n2, args.overrides)
                rows.append((old, new))
                print(f"repeat {repeat + 1}: old {old:.3f} s, new {new:.3f} s per iteration, "
                      f"old / new {old / new:.2f}x", flush=True)
        finally:
            git("worktree", "remove", "--force", str(old_root))
    old_mean = sum(r[0] for r in rows) / len(rows)
    new_mean = sum(r[1] for r in rows) / len(rows)
    print(f"mean: old {old_mean:.3f} s, new {new_mean:.3f} s per iteration, "
          f"old / new {old_mean / new_mean:.2f}x")


if __name__ == "__main__":
    main()
