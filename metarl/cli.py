"""Command line: ``metarl train | evaluate | plot | progress | render | bench | data``."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from metarl.checkpoint import CheckpointError
from metarl.cli_types import count, default, positive_number, positive_numbers
from metarl.config import ConfigError, load_config
from metarl.distributed import DistributedError, close_shard, init_shard
from metarl.rl.families import make_family
from metarl.rl.sampler import EnvOutputError
from metarl.runs import resolve_device
from metarl.supervised.images import DataError

USER_ERRORS = (ConfigError, CheckpointError, FileNotFoundError, DataError, DistributedError,
               EnvOutputError)


def cmd_train(args: argparse.Namespace) -> None:
    if args.config is None and not args.resume:
        raise ConfigError("train needs a CONFIG file (or --resume with --run-dir)")
    if args.config is None:
        if args.run_dir is None:
            raise ConfigError("--resume without CONFIG needs --run-dir")
        config = load_config(Path(args.run_dir) / "config.yaml", args.set)
    else:
        config = load_config(args.config, args.set)
    run_dir = args.run_dir or str(Path("runs") / Path(args.config).stem)
    shard = init_shard(resolve_device(config.device))  # one process unless under torchrun
    try:
        if config.kind == "rl":
            from metarl.rl.train import train as train_rl

            family = make_family(config)
            metrics = train_rl(config, family, run_dir, resume=args.resume,
                               progress=not args.quiet, shard=shard)
        elif config.kind == "fewshot":
            from metarl.supervised.fewshot_train import train as train_fewshot

            metrics = train_fewshot(config, run_dir, resume=args.resume,
                                    progress=not args.quiet, shard=shard)
        else:
            from metarl.supervised.train import train

            metrics = train(config, run_dir, resume=args.resume, progress=not args.quiet,
                            shard=shard)
    except BaseException:
        close_shard(finished=False)
        raise
    close_shard()
    if shard.is_main and not metrics:
        print(f"{run_dir}: nothing to train, the run has reached its {config.iterations} "
              "iterations (--set iterations=N continues it)")
    elif shard.is_main:
        print(f"run saved in {run_dir}: "
              + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from metarl.evaluate import write_result
    from metarl.rl.evaluate import evaluate_rl
    from metarl.runs import load_run_config
    from metarl.supervised.fewshot_eval import evaluate_fewshot
    from metarl.supervised.sinusoid_eval import evaluate_sinusoid

    config = load_run_config(args.run_dir)
    if args.split == "train" and config.kind != "rl":
        raise ConfigError("--split train is for RL runs (Meta-World's meta-train tasks)")
    if args.lockstep and config.kind != "rl":
        raise ConfigError("--lockstep is for RL runs (a sample budget of episodes)")
    if config.kind == "rl":
        result = evaluate_rl(args.run_dir, make_family(config), steps=default(args.steps, 3),
                             num_tasks=default(args.tasks, 40), episodes=args.episodes,
                             seed=args.seed, checkpoint=args.checkpoint or "best.pt",
                             inner_lr=args.inner_lr, later_factor=default(args.later_factor, 0.5),
                             samples=args.samples, held_out=args.split == "test",
                             selection="lockstep" if args.lockstep else "first")
        curves = {result["method"]: result["curve"]}
        if "success" in result:
            curves["success"] = result["success"]
    elif config.kind == "fewshot":
        result = evaluate_fewshot(args.run_dir, steps=args.steps,
                                  num_tasks=default(args.tasks, 600),
                                  seed=args.seed, checkpoint=args.checkpoint or "checkpoint.pt",
                                  inner_lr=args.inner_lr,
                                  later_factor=default(args.later_factor, 1.0))
        curves = {result["dataset"]: result["curve"]}
    else:
        shots = tuple(int(s) for s in args.shots.split(","))
        result = evaluate_sinusoid(args.run_dir, steps=default(args.steps, 10),
                                   num_tasks=default(args.tasks, 600), shots=shots,
                                   seed=args.seed,
                                   checkpoint=args.checkpoint or "checkpoint.pt",
                                   inner_lr=args.inner_lr,
                                   later_factor=default(args.later_factor, 0.5))
        curves = {f"K={k}": curve for k, curve in result["shots"].items()}
    out = Path(args.out) if args.out else Path(args.run_dir) / "evaluation.json"
    json_path, png_path = write_result(result, out)
    for label, curve in curves.items():
        picks = [s for s in (0, 1, 2, 3, 5, 10) if s < len(curve["mean"])]
        summary = ", ".join(f"{s} steps {curve['mean'][s]:.3f}±{curve['ci95'][s]:.3f}"
                            for s in picks)
        print(f"{label}: {summary}")
    print(f"wrote {json_path} and {png_path}")


def cmd_plot(args: argparse.Namespace) -> None:
    from metarl.compare import adaptation_figure, training_figure

    if args.trajectories:
        from metarl.rl.trajectories import plot_trajectories
        from metarl.runs import load_run_config

        if len(args.run_dirs) != 1:
            raise ConfigError("--trajectories draws one run: give one RUN_DIR")
        config = load_run_config(args.run_dirs[0])
        if config.kind != "rl" or config.env != "Navigation2D":
            raise ConfigError(f"--trajectories draws Navigation2D runs; {args.run_dirs[0]} is "
                              f"a {getattr(config, 'env', config.kind)} run")
        path = plot_trajectories(args.run_dirs[0], make_family(config), args.out,
                                 num_tasks=default(args.tasks, 4), steps=default(args.steps, 3),
                                 checkpoint=args.checkpoint or "best.pt")
    elif args.training:
        path = training_figure(args.run_dirs, args.out, args.tag, args.smooth)
    else:
        path = adaptation_figure(args.run_dirs, args.out)
    print(f"wrote {path}")


def cmd_progress(args: argparse.Namespace) -> None:
    from metarl.progress import format_progress, training_progress

    print("\n\n".join(format_progress(training_progress(run_dir, args.every))
                       for run_dir in args.run_dirs))


def cmd_render(args: argparse.Namespace) -> None:
    import os

    os.environ.setdefault("MUJOCO_GL", "egl")  # headless; read when mujoco is imported
    from metarl.rl.render import RenderError, render_adaptation
    from metarl.runs import load_run_config

    config = load_run_config(args.run_dir)
    if config.kind != "rl" or config.env == "Navigation2D" or ":" in config.env:
        raise ConfigError(f"render draws runs of the built-in MuJoCo families; {args.run_dir} "
                          f"is a {getattr(config, 'env', config.kind)} run")
    try:
        path = render_adaptation(args.run_dir, make_family(config), args.out,
                                 num_tasks=args.tasks, steps=args.steps, seed=args.seed,
                                 checkpoint=args.checkpoint, strip=args.strip)
    except RenderError as err:
        raise ConfigError(str(err)) from None
    print(f"wrote {path}" + (f" and {args.strip}" if args.strip else ""))


def cmd_bench(args: argparse.Namespace) -> None:
    import runpy

    bench_dir = Path(__file__).resolve().parent.parent / "experiments" / "bench"
    if not bench_dir.is_dir():
        raise FileNotFoundError(f"benchmarks live in experiments/bench/ of a source checkout "
                                f"(git clone; pip install -e .), not in {bench_dir.parent}")
    script = bench_dir / f"{args.name.replace('-', '_')}.py"
    if not script.is_file():
        names = ", ".join(sorted(p.stem.replace("_", "-") for p in bench_dir.glob("*.py")))
        raise FileNotFoundError(f"no benchmark named {args.name!r}; there are {names}")
    sys.argv = [str(script), *args.rest]
    runpy.run_path(str(script), run_name="__main__")


def cmd_data(args: argparse.Namespace) -> None:
    from metarl.supervised.download import download_omniglot

    download_omniglot(args.to, args.archives, progress=not args.quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metarl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="meta-train from a YAML config")
    train.add_argument("config", nargs="?", help="YAML config (see experiments/configs/)")
    train.add_argument("--run-dir", help="where to write the run (default runs/<config name>)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key (repeatable)")
    train.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="adaptation curves of a trained run")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--steps", type=count(0), help="inner steps 0..K (sinusoid 10, RL 3, "
                          "few-shot the config's eval_inner_steps)")
    evaluate.add_argument("--tasks", type=count(1), help="held-out tasks (sinusoid and "
                          "few-shot 600, RL 40)")
    evaluate.add_argument("--shots", default="5,10,20", help="sinusoid support sizes")
    evaluate.add_argument("--episodes", type=count(1), help="RL episodes per task and step "
                          "(default: the run's eval_episodes, else its episodes_per_task)")
    evaluate.add_argument("--samples", type=count(1), help="RL: at least this many steps per "
                          "task and step, in whole episodes (default: the run's eval_samples)")
    evaluate.add_argument("--lockstep", action="store_true", help="RL, with --samples: keep "
                          "the episodes that --episodes envs per task, stepped in lockstep, "
                          "have finished when they hold the samples, as rllab's sampler (the "
                          "MAML paper's figures); favours short episodes")
    evaluate.add_argument("--seed", type=int, default=12345)
    evaluate.add_argument("--split", choices=["test", "train"], default="test",
                          help="RL: the held-out tasks (default) or the training tasks (for "
                          "Meta-World its meta-train split; elsewhere the same distribution)")
    evaluate.add_argument("--checkpoint", help="checkpoint.pt (supervised default) or best.pt "
                          "(RL default: the best iterate, as the paper evaluates)")
    evaluate.add_argument("--inner-lr", type=positive_number, help="first test-time step "
                          "size (default: the run's inner_lr)")
    evaluate.add_argument("--later-factor", type=positive_numbers, help="later steps' size "
                          "relative to the first, one for all or one per later step "
                          "(0.4,0.2: step 2 is 0.4 alpha, step 3 and later 0.2 alpha; "
                          "default: RL and sinusoid 0.5, few-shot 1)")
    evaluate.add_argument("--out", help="JSON path (default RUN_DIR/evaluation.json)")
    evaluate.set_defaults(func=cmd_evaluate)

    plot = sub.add_parser("plot", help="adaptation (or training) curves of several runs")
    plot.add_argument("run_dirs", nargs="+")
    plot.add_argument("--out", required=True, help="PNG path")
    plot.add_argument("--trajectories", action="store_true", help="2D navigation: paths to "
                      "held-out goals before and after each inner step")
    plot.add_argument("--tasks", type=count(1), help="--trajectories: goals drawn (4)")
    plot.add_argument("--steps", type=count(0), help="--trajectories: inner steps (3)")
    plot.add_argument("--checkpoint", help="--trajectories: best.pt (default) or checkpoint.pt")
    plot.add_argument("--training", action="store_true",
                      help="training curves from TensorBoard (mean and spread over seeds)")
    plot.add_argument("--tag", action="append",
                      help="TensorBoard scalar for --training, repeatable (default: the "
                           "value before and after adaptation)")
    plot.add_argument("--smooth", type=count(1), help="--training: moving mean of this "
                      "many logged points over the faint raw line (default a fiftieth of "
                      "them; 1: raw only)")
    plot.set_defaults(func=cmd_plot)

    progress = sub.add_parser("progress", help="where training runs stand: iterations, "
                              "hours spent and left, value before and after adaptation per "
                              "block of iterations")
    progress.add_argument("run_dirs", nargs="+")
    progress.add_argument("--every", type=count(1), help="iterations per block (default a "
                          "tenth of the run's iterations)")
    progress.set_defaults(func=cmd_progress)

    render = sub.add_parser("render", help="video of a MuJoCo policy before and after "
                            "adaptation (rows: held-out tasks, columns: inner steps)")
    render.add_argument("run_dir")
    render.add_argument("--out", required=True, help="video path: .gif, or .mp4 with "
                        "imageio-ffmpeg")
    render.add_argument("--tasks", type=count(1), default=2, help="held-out tasks (2)")
    render.add_argument("--steps", type=count(0), default=1, help="inner steps (1)")
    render.add_argument("--seed", type=int, default=12345)
    render.add_argument("--checkpoint", default="best.pt")
    render.add_argument("--strip", help="also a PNG of five frames of the video")
    render.set_defaults(func=cmd_render)

    bench = sub.add_parser("bench", help="run a benchmark from experiments/bench/ (needs a "
                           "source checkout)")
    bench.add_argument("name", help="fisher-product, meta-iteration, sampler, supervised, "
                       "distributed")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)

    data = sub.add_parser("data", help="download a data set (Omniglot's official archives)")
    data.add_argument("dataset", choices=["omniglot"])
    data.add_argument("--to", required=True, help="folder to put the archives in")
    data.add_argument("--archives", nargs="+", metavar="NAME",
                      help="images_background images_evaluation images_background_small1 "
                      "images_background_small2 (default: all four)")
    data.add_argument("--quiet", action="store_true", help="no progress bar")
    data.set_defaults(func=cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from metarl.runs import Interrupted

    try:
        args.func(args)
    except USER_ERRORS as err:
        if isinstance(err, DistributedError):  # said once: a later SIGTERM ends us quietly
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        print(f"metarl: error: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(f"metarl: {stop}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("metarl: stopped at once; the last checkpoint on disk is whole", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
