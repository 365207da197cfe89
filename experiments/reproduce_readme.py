"""Recompute the README's figures that take under ~15 minutes each, next to the README.

Each check below names a README figure, how to recompute it (an evaluation of a
committed checkpoint, a short training and its evaluation, or a benchmark) and the
value the README gives with its 95% interval. The script runs them in a scratch
folder and prints one row per number: README value, value now, relative
difference, and a flag where the two 95% intervals do not overlap (benchmark
ratios: where they differ by more than 25%, as machines drift). Not part of CI;
run it before any change of results, and on a new machine.

    python experiments/reproduce_readme.py             # all (about an hour on 2 cores)
    python experiments/reproduce_readme.py --only sinusoid navigation-seed0
    python experiments/reproduce_readme.py --list
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
CONFIGS = ROOT / "experiments" / "configs"


@dataclass
class Check:
    """One README figure: ``readme`` maps a step (or a ratio's name) to (value, ci95)."""

    name: str
    what: str
    readme: dict[str, tuple[float, float | None]]
    train: list[str] = field(default_factory=list)  # metarl train arguments, if any
    evaluate: list[str] = field(default_factory=list)  # metarl evaluate arguments
    bench: list[str] = field(default_factory=list)  # a benchmark script and its arguments
    patterns: dict[str, str] = field(default_factory=dict)  # a ratio's regex in its output
    curve: str = "curve"  # where the evaluation JSON keeps the curve ("shots/5": sinusoid)
    scale: float = 1.0  # README unit per JSON unit (100: accuracy in percent)


CHECKS = [
    Check("sinusoid-seed0", "the committed seed-0 sinusoid run, 5-shot MSE after 1/5/10 steps",
          {"1": (0.593, 0.053), "5": (0.352, 0.036), "10": (0.328, 0.033)},
          evaluate=[str(RESULTS / "sinusoid" / "seed0"), "--shots", "5"], curve="shots/5"),
    Check("sinusoid", "sinusoid.yaml trained (70 000 iterations), 5-shot MSE after 1/5/10 steps",
          {"1": (0.593, 0.053), "5": (0.352, 0.036), "10": (0.328, 0.033)},
          train=[str(CONFIGS / "sinusoid.yaml")], evaluate=["--shots", "5"], curve="shots/5"),
    Check("omniglot-5w1s-500", "omniglot-small-5w1s.yaml, MAML 500 iterations, accuracy "
          "after 0/1/3 steps", {"0": (20.4, 1.5), "1": (90.4, 1.2), "3": (90.8, 1.2)},
          train=[str(CONFIGS / "omniglot-small-5w1s.yaml"), "--set", "iterations=500"],
          evaluate=["--steps", "3"], scale=100.0),
    Check("navigation-seed0", "navigation-2d-lr0.5 best.pt, 1000 tasks, 40 episodes",
          {"0": (-37.78, 0.90), "1": (-11.69, 0.44)},
          evaluate=[str(RESULTS / "navigation-2d-lr0.5"), "--tasks", "1000", "--steps", "1",
                    "--episodes", "40"]),
    Check("navigation-seed1", "navigation-2d-lr0.5-seed1 best.pt, 1000 tasks, 40 episodes",
          {"0": (-38.20, 0.92), "1": (-12.58, 0.43)},
          evaluate=[str(RESULTS / "navigation-2d-lr0.5-seed1"), "--tasks", "1000", "--steps",
                    "1", "--episodes", "40"]),
    Check("halfcheetah-vel", "halfcheetah-vel best.pt (445), 200 tasks",
          {"0": (-139.52, 13.42), "1": (-91.50, 7.45), "2": (-72.92, 6.02),
           "3": (-71.56, 6.08)},
          evaluate=[str(RESULTS / "halfcheetah-vel" / "maml-seed0"), "--tasks", "200"]),
    Check("halfcheetah-dir", "halfcheetah-dir all episodes, best.pt (406), 40 tasks",
          {"0": (-46.93, 45.77), "1": (296.16, 64.36), "2": (359.89, 61.21),
           "3": (402.66, 60.44)},
          evaluate=[str(RESULTS / "halfcheetah-dir" / "maml-all-episodes-seed0")]),
    Check("bench-sampler", "sampler benchmark, HalfCheetahVel (ratios)",
          {"a/b": (4.52, None), "a'/c": (1.01, None)}, bench=["sampler.py"],
          patterns={"a/b": r"a/b = ([0-9.]+)", "a'/c": r"a'/c = ([0-9.]+)"}),
    Check("bench-supervised", "supervised meta-gradient benchmark (ratios)",
          {"loop/batched": (11.2, None)}, bench=["supervised.py", "--threads", "1"],
          patterns={"loop/batched": r"batched ([0-9.]+)x"}),
]


def run(args: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def measure(check: Check, scratch: Path) -> dict[str, tuple[float, float | None]]:
    """The check's numbers now, keyed as ``check.readme``."""
    metarl = [sys.executable, "-m", "metarl"]
    if check.bench:
        out = run([sys.executable, str(ROOT / "experiments" / "bench" / check.bench[0]),
                   *check.bench[1:]])
        found = {}
        for key in check.readme:
            match = re.search(check.patterns[key], out)
            found[key] = (float(match.group(1)) if match else float("nan"), None)
        return found
    evaluate = list(check.evaluate)
    if check.train:
        run_dir = scratch / check.name
        run([*metarl, "train", check.train[0], "--run-dir", str(run_dir), "--quiet",
             *check.train[1:]])
        evaluate = [str(run_dir), *evaluate]
    out = scratch / f"{check.name}.json"
    run([*metarl, "evaluate", *evaluate, "--out", str(out)])
    curve = json.loads(out.read_text())
    for part in check.curve.split("/"):
        curve = curve[part]
    return {step: (check.scale * curve["mean"][int(step)], check.scale * curve["ci95"][int(step)])
            for step in check.readme}


def rows(check: Check, now: dict) -> list[str]:
    lines = []
    for key, (value, ci) in check.readme.items():
        new, new_ci = now[key]
        rel = (new - value) / abs(value) if value else float("nan")
        if ci is None:
            flag = "  <-- differs by more than 25%" if abs(rel) > 0.25 else ""
        else:
            flag = "  <-- outside" if abs(new - value) > ci + (new_ci or 0.0) else ""
        shown = f"{value:g}" + (f" ± {ci:g}" if ci is not None else "")
        shown_new = f"{new:.4g}" + (f" ± {new_ci:.2g}" if new_ci is not None else "")
        lines.append(f"{check.name:18s} {key:>12s}  README {shown:>18s}  now {shown_new:>18s}"
                     f"  {rel:+7.1%}{flag}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these checks only")
    parser.add_argument("--list", action="store_true", help="name the checks and stop")
    args = parser.parse_args()
    names = [c.name for c in CHECKS]
    if args.list:
        for check in CHECKS:
            print(f"{check.name:18s} {check.what}")
        return
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:
        parser.error(f"unknown check(s) {', '.join(unknown)}; the checks: {', '.join(names)}")
    chosen = [c for c in CHECKS if not args.only or c.name in args.only]
    with tempfile.TemporaryDirectory() as scratch:
        for check in chosen:
            print(f"# {check.name}: {check.what}", flush=True)
            for line in rows(check, measure(check, Path(scratch))):
                print(line, flush=True)


if __name__ == "__main__":
    main()
