"""MAML-TRPO end to end on 2D navigation: learning, resume, CLI wiring."""

import pytest
import torch

from metarl.checkpoint import load_checkpoint
from metarl.cli import main
from metarl.config import ConfigError, load_config
from metarl.rl.families import make_family
from metarl.rl.train import train

SMALL = ["meta_batch_size=8", "episodes_per_task=8", "horizon=40", "hidden_sizes=[32,32]",
         "checkpoint_every=2", "max_kl=0.03"]


def config(*extra):
    return load_config(data={"kind": "rl"}, overrides=SMALL + list(extra))


def test_navigation_post_adaptation_return_improves(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = config("iterations=20")
    train(cfg, make_family(cfg), tmp_path, progress=False)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    after = [s.value for s in events.Scalars("return/after_1_steps")]
    before = [s.value for s in events.Scalars("return/after_0_steps")]
    assert len(after) == 20
    # Random policy: about -22 per 40-step episode; learned: clearly better.
    assert sum(after[-4:]) / 4 > 0.75 * sum(after[:2]) / 2
    # Adaptation helps once meta-trained.
    assert sum(after[-5:]) > sum(before[-5:])
    for tag in ("surrogate/before", "surrogate/after", "trpo/kl", "trpo/line_search_steps",
                "env_steps_per_second", "time/sampling", "time/adaptation", "time/outer_step"):
        assert tag in events.Tags()["scalars"], tag
    assert max(s.value for s in events.Scalars("trpo/kl")) <= cfg.max_kl
    assert (tmp_path / "best.pt").exists()


def test_resume_equals_uninterrupted(tmp_path):
    full = config("iterations=4")
    train(full, make_family(full), tmp_path / "full", progress=False)
    half = config("iterations=2")
    train(half, make_family(half), tmp_path / "split", progress=False)
    train(full, make_family(full), tmp_path / "split", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_unknown_family_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown task family 'HalfCheetahVelo'.*HalfCheetahVel"):
        make_family(config("env=HalfCheetahVelo"))


def train_with_cli(tmp_path, yaml_text):
    """Write ``yaml_text`` as a config, train it small with ``metarl train``: the run dir."""
    path = tmp_path / "nav.yaml"
    path.write_text(yaml_text)
    run = tmp_path / "run"
    assert main(["train", str(path), "--run-dir", str(run), "--quiet"]
                + [f"--set={s}" for s in SMALL]) == 0
    return run


def test_cli_trains_rl_config(tmp_path):
    from metarl.compare import read_scalars
    from metarl.rl.train import build_policy

    run = train_with_cli(tmp_path, "kind: rl\nenv: metarl/Navigation2D-v0\niterations: 2\n")
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["iteration"] == 2
    cfg = load_config(run / "config.yaml")
    env = make_family(cfg).make_vector_env([{"goal": [0.0, 0.0]}], 1)
    initial = build_policy(cfg, env.single_observation_space, env.single_action_space)
    assert any(not torch.equal(v, state["model"][k]) for k, v in initial.state_dict().items())
    steps, accepted = read_scalars(run, "trpo/accepted")
    assert steps == [1, 2] and sum(accepted) >= 1  # the TRPO steps moved the policy


def test_evaluate_rl_run_writes_curve_and_is_reproducible(tmp_path):
    import json

    run = train_with_cli(tmp_path, "kind: rl\nenv: Navigation2D\niterations: 2\n")
    out = [tmp_path / "a.json", tmp_path / "b.json"]
    for o in out:
        assert main(["evaluate", str(run), "--steps", "2", "--tasks", "4", "--episodes", "3",
                     "--out", str(o)]) == 0
    a, b = (json.loads(o.read_text()) for o in out)
    assert a["curve"] == b["curve"] and a["per_task"] == b["per_task"]
    assert a["curve"]["steps"] == [0, 1, 2] and len(a["per_task"]) == 4
    assert a["step_sizes"] == [0.1, 0.05]
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluation_takes_the_configs_eval_episodes_unless_told(tmp_path):
    import json

    run = train_with_cli(tmp_path, "kind: rl\nenv: Navigation2D\niterations: 1\neval_episodes: 5\n")
    common = ["evaluate", str(run), "--steps", "1", "--tasks", "2"]
    assert main(common + ["--out", str(tmp_path / "config.json")]) == 0
    assert main(common + ["--episodes", "3", "--out", str(tmp_path / "told.json")]) == 0
    assert json.loads((tmp_path / "config.json").read_text())["episodes"] == 5
    assert json.loads((tmp_path / "told.json").read_text())["episodes"] == 3


def test_plot_compares_runs_and_seeds(tmp_path):
    import csv

    runs = []
    for seed in (0, 1):
        run = tmp_path / f"seed{seed}"
        cfg = config("iterations=2", f"seed={seed}")
        train(cfg, make_family(cfg), run, progress=False)
        assert main(["evaluate", str(run), "--steps", "1", "--tasks", "3", "--episodes", "2"]) == 0
        runs.append(str(run))
    rows = list(csv.reader(open(tmp_path / "seed0" / "evaluation.csv")))
    assert rows[0] == ["task", "step", "return"] and len(rows) == 1 + 3 * 2
    assert main(["plot", *runs, "--out", str(tmp_path / "curves.png")]) == 0
    assert main(["plot", *runs, "--training", "--out", str(tmp_path / "train.png")]) == 0
    assert main(["plot", *runs, "--training", "--smooth", "2", "--out",
                 str(tmp_path / "smooth.png")]) == 0
    for name in ("curves.png", "train.png", "smooth.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2


def test_training_curves_draw_before_and_after_adaptation(tmp_path, monkeypatch):
    import metarl.compare as compare

    drawn = {}
    monkeypatch.setattr(compare, "plot_training",
                        lambda groups, out, ylabel, title, smooth: drawn.update(
                            groups, ylabel=ylabel))
    runs = []
    for seed in (0, 1):
        cfg = config("iterations=2", f"seed={seed}")
        train(cfg, make_family(cfg), tmp_path / f"seed{seed}", progress=False)
        runs.append(str(tmp_path / f"seed{seed}"))
    compare.training_figure(runs, tmp_path / "t.png")
    before, after = "maml (seed0): before adaptation", "maml (seed0): after 1 step"
    assert sorted(drawn) == sorted([before, after, "ylabel"])
    assert drawn["ylabel"] == "training return"
    assert len(drawn[before]) == 2  # the two seeds are one group
    steps, values = drawn[after][1]
    assert (steps, values) == compare.read_scalars(runs[1], "return/after_1_steps")
    drawn.clear()
    compare.training_figure(runs[:1], tmp_path / "t.png", ["trpo/kl"])
    assert sorted(drawn) == ["maml (seed0)", "ylabel"] and drawn["ylabel"] == "trpo/kl"
    assert compare.tag_label("return/after_3_steps") == "after 3 steps"
    assert compare.tag_label("accuracy/query_before_adaptation") == "before adaptation"


def test_moving_mean_is_the_mean_of_the_last_window_values():
    from metarl.plot import moving_mean

    values = [3.0, -1.0, 4.0, 1.5, 9.0, -2.6, 5.0]
    for window in (1, 2, 3, 7, 10):
        expected = [sum(values[max(0, i - window + 1):i + 1]) / min(i + 1, window)
                    for i in range(len(values))]
        assert moving_mean(values, window) == pytest.approx(expected)


def test_best_checkpoint_holds_the_parameters_that_scored_best(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = config("iterations=4", "checkpoint_every=1")
    train(cfg, make_family(cfg), tmp_path, progress=False)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    returns = [s.value for s in events.Scalars("return/after_1_steps")]
    best = load_checkpoint(tmp_path / "best.pt")
    # Iteration k's returns were measured with the parameters after k updates.
    assert best["iteration"] == max(range(4), key=returns.__getitem__)
    assert best["best_return"] == pytest.approx(max(returns))


def test_evaluating_a_checkpoint_of_another_family_is_a_clear_error(tmp_path, capsys):
    tiny = ["--set=iterations=1", "--set=meta_batch_size=2", "--set=episodes_per_task=2",
            "--set=horizon=5", "--set=hidden_sizes=[8]", "--quiet"]
    for env, name in (("Navigation2D", "nav"), ("HalfCheetahDir", "cheetah")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"kind: rl\nenv: {env}\n")
        assert main(["train", str(path), "--run-dir", str(tmp_path / name), *tiny]) == 0
    capsys.readouterr()
    (tmp_path / "nav" / "best.pt").write_bytes((tmp_path / "cheetah" / "best.pt").read_bytes())
    assert main(["evaluate", str(tmp_path / "nav"), "--tasks", "2", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("metarl: error:") and "different config" in err and "\n" not in err
    assert not (tmp_path / "nav" / "evaluation.json").exists()
    assert main(["evaluate", str(tmp_path), "--tasks", "2"]) == 2  # not a run directory
    assert "not a metarl run directory" in capsys.readouterr().err


def test_load_for_sampling_restores_the_checkpoints_policy(tmp_path):
    import numpy as np

    from metarl.rl.families import load_for_sampling

    run = tmp_path / "run"
    train(config("iterations=1"), make_family(config()), run, progress=False)
    state, cfg, _, env, policy = load_for_sampling(run / "checkpoint.pt",
                                                   np.random.default_rng(0))
    assert cfg.kind == "rl" and env.num_tasks == cfg.meta_batch_size
    for name, value in policy.state_dict().items():
        assert torch.equal(value, state["model"][name])
    env.close()


def test_checkpoint_meta_batches_samples_fresh_batches_of_the_config(tmp_path):
    from metarl.rl.families import checkpoint_meta_batches

    run = tmp_path / "run"
    train(config("iterations=1"), make_family(config()), run, progress=False)
    _, cfg, _, batches = checkpoint_meta_batches(run / "checkpoint.pt", 2)
    first, second = list(batches)
    assert first.valid.obs.shape[:2] == (cfg.meta_batch_size, cfg.episodes_per_task)
    assert len(first.train) == cfg.inner_steps
    assert not torch.equal(first.valid.obs, second.valid.obs)  # other tasks, other episodes


def test_runs_written_before_a_config_key_existed_still_evaluate_and_resume(tmp_path, capsys):
    # A run from an older metarl has no cg_preconditioner / kfac_damping in its saved
    # configs: it ran with their defaults, so it must evaluate and resume as before.
    import yaml

    from metarl.checkpoint import save_checkpoint
    run = train_with_cli(tmp_path, "kind: rl\niterations: 2\n")
    state = load_checkpoint(run / "checkpoint.pt")
    for key in ("cg_preconditioner", "kfac_damping"):
        del state["config"][key]
    save_checkpoint(state, run / "checkpoint.pt")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    old = {k: v for k, v in saved.items() if k not in ("cg_preconditioner", "kfac_damping")}
    (run / "config.yaml").write_text(yaml.safe_dump(old))
    assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "2", "--steps", "1",
                 "--out", str(tmp_path / "eval.json")]) == 0
    assert main(["train", str(run / "config.yaml"), "--run-dir", str(run), "--resume",
                 "--quiet", "--set=iterations=3"]) == 0
    assert load_checkpoint(run / "checkpoint.pt")["iteration"] == 3
    # Asking for another value than the run's default is still a change of the run.
    capsys.readouterr()
    assert main(["train", str(run / "config.yaml"), "--run-dir", str(run), "--resume",
                 "--quiet", "--set=iterations=4", "--set=cg_preconditioner=kfac"]) != 0
    assert "cg_preconditioner' was 'none' in the run" in capsys.readouterr().err


def test_trajectories_are_the_evaluations_episodes_drawn(tmp_path, capsys):
    """The paths are the observations of the evaluation's own rollouts, until each end."""
    import numpy as np

    from metarl.rl.evaluate import adaptation_returns, load_policy
    from metarl.rl.trajectories import adaptation_paths

    cfg = config("iterations=1")
    family = make_family(cfg)
    run = tmp_path / "nav"
    train(cfg, family, run, progress=False)
    _, _, policy = load_policy(run, family, "best.pt")
    goals, paths = adaptation_paths(policy, family, cfg, 3, 2, 1, seed=5)
    returns = adaptation_returns(policy, family, cfg, 3, 2, 1, seed=5)
    assert goals.shape == (3, 2) and len(paths) == 2 and len(paths[0]) == 3
    for k in range(2):  # navigation's reward is minus the distance after each move
        for t in range(3):
            for path in paths[k][t]:
                assert path.shape[1] == 2 and 1 <= len(path) <= cfg.horizon
            # the first position is the start; each later one earned minus its distance
            # to the goal: the return of the same episodes less the last move's term
            assert np.allclose([p[0] for p in paths[k][t]], 0.0)
            partial = np.mean([-np.linalg.norm(p[1:] - goals[t], axis=1).sum()
                               for p in paths[k][t]])
            assert 0.0 <= partial - returns[t, k] <= 1.5
    assert np.isfinite(returns).all()
    out = tmp_path / "paths.png"
    assert main(["plot", str(run), "--trajectories", "--tasks", "2", "--steps", "1",
                 "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(run), str(run), "--trajectories", "--out", str(out)]) == 2
    assert "one RUN_DIR" in capsys.readouterr().err


@pytest.mark.parametrize("env", ["Navigation2D", "HalfCheetahVel"])
def test_xavier_policy_init_is_glorot_uniform_with_zero_biases(env):
    from metarl.rl.config import RLConfig
    from metarl.rl.train import build_policy

    probe = make_family(RLConfig(env=env)).make_env()
    spaces = probe.observation_space, probe.action_space
    torch_init = build_policy(RLConfig(env=env, seed=3), *spaces)
    xavier = build_policy(RLConfig(env=env, seed=3, policy_init="xavier"), *spaces)
    for old, new in zip(torch_init.mean.layers, xavier.mean.layers):
        fan_out, fan_in = new.weight.shape
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert new.weight.abs().max() <= bound
        assert new.weight.abs().max() > 0.9 * bound  # uniform over the whole range
        assert torch.equal(new.bias, torch.zeros_like(new.bias))
        assert old.bias.abs().max() > 0  # the default draws biases
    zero_obs = torch.zeros(probe.observation_space.shape)
    assert torch.equal(xavier(zero_obs).mean, torch.zeros(probe.action_space.shape))
    assert torch.equal(xavier.log_std, torch_init.log_std)


def test_later_steps_can_each_have_their_own_size(tmp_path, capsys):
    import json

    run = train_with_cli(tmp_path, "kind: rl\nenv: Navigation2D\niterations: 1\n")
    common = ["evaluate", str(run), "--steps", "3", "--tasks", "3", "--episodes", "3"]
    assert main(common + ["--later-factor", "0.4,0.2", "--out", str(tmp_path / "a.json")]) == 0
    assert main(common + ["--later-factor", "0.4", "--out", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a["step_sizes"] == pytest.approx([0.1, 0.04, 0.02])
    # the same first two steps adapt alike; the third differs because its size does
    same = [ta[:3] == tb[:3] for ta, tb in zip(a["per_task"], b["per_task"])]
    assert all(same) and a["per_task"] != b["per_task"]
    with pytest.raises(SystemExit):
        main(common + ["--later-factor", "0.4,-1"])
    assert "must be a positive number, got -1" in capsys.readouterr().err


def test_step_sizes_repeat_the_last_later_factor():
    from metarl.evaluate import step_sizes

    assert step_sizes(0.5, 4, 0.5) == [0.5, 0.25, 0.25, 0.25]
    assert step_sizes(0.5, 4, (0.4, 0.2)) == pytest.approx([0.5, 0.2, 0.1, 0.1])
    assert step_sizes(0.5, 1, (0.4, 0.2)) == [0.5]
