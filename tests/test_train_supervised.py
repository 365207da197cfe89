"""Supervised meta-training end to end: learning, resume, checkpoints, evaluation, CLI."""

import json

import pytest
import torch

from metarl.checkpoint import CheckpointError, load_checkpoint
from metarl.cli import main
from metarl.config import load_config
from metarl.evaluate import mean_ci95
from metarl.supervised.sinusoid_eval import evaluate_sinusoid
from metarl.supervised.train import train

SMALL = ["iterations=40", "meta_batch_size=5", "hidden_sizes=[16,16]", "checkpoint_every=20",
         "log_every=10", "outer_lr=0.003"]


def small_config(*extra):
    return load_config(data={"kind": "sinusoid"}, overrides=SMALL + list(extra))


@pytest.mark.parametrize("method", ["maml", "fomaml", "metasgd", "anil", "reptile", "tamaml"])
def test_every_method_trains_and_its_loss_falls(tmp_path, method):
    config = small_config(f"method={method}", "iterations=200", "log_every=200", "outer_lr=0.01",
                          "inner_steps=3" if method == "reptile" else "inner_steps=1")
    before = evaluate_after_training(tmp_path / "zero", small_config(f"method={method}",
                                                                      "iterations=1"))
    train(config, tmp_path / "run", progress=False)
    after = evaluate_sinusoid(tmp_path / "run", steps=1, num_tasks=200, shots=(10,))
    assert after["shots"]["10"]["mean"][1] < 0.8 * before


def evaluate_after_training(run_dir, config):
    train(config, run_dir, progress=False)
    return evaluate_sinusoid(run_dir, steps=1, num_tasks=200, shots=(10,))["shots"]["10"]["mean"][1]


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tmp_path):
    train(small_config(), tmp_path / "full", progress=False)
    train(small_config("iterations=20"), tmp_path / "split", progress=False)
    train(small_config(), tmp_path / "split", resume=True, progress=False)
    full = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    split = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert full["iteration"] == split["iteration"] == 40
    for k, v in full["model"].items():
        assert torch.equal(v, split["model"][k]), k


def test_existing_run_is_protected_and_resume_checks_the_config(tmp_path):
    train(small_config("iterations=20"), tmp_path / "run", progress=False)
    saved = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match="already holds a run"):
        train(small_config(), tmp_path / "run", progress=False)
    with pytest.raises(CheckpointError, match="config key 'inner_lr' was 0.01 in the run, now 0.5"):
        train(small_config("inner_lr=0.5"), tmp_path / "run", resume=True, progress=False)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == saved
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        train(small_config(), tmp_path / "empty", resume=True, progress=False)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    train(small_config("iterations=10"), tmp_path / "run", progress=False)
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        evaluate_sinusoid(tmp_path / "run", steps=1, num_tasks=5)
    with pytest.raises(CheckpointError, match="not a metarl run directory"):
        evaluate_sinusoid(tmp_path, steps=1, num_tasks=5)


def test_run_dir_with_incompatible_config_is_a_clear_error(tmp_path):
    train(small_config("iterations=10"), tmp_path / "run", progress=False)
    path = tmp_path / "run" / "config.yaml"
    path.write_text(path.read_text().replace("hidden_sizes:\n- 16\n- 16", "hidden_sizes:\n- 8"))
    with pytest.raises(CheckpointError, match="written by a different config"):
        evaluate_sinusoid(tmp_path / "run", steps=1, num_tasks=5)


def test_mean_ci95_known_answer():
    mean, half = mean_ci95([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert half == pytest.approx(1.96 * (5 / 3) ** 0.5 / 2)


def test_cli_train_evaluate_writes_json_png_and_tensorboard(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("kind: sinusoid\n")
    run = tmp_path / "run"
    args = ["train", str(config), "--run-dir", str(run), "--quiet"]
    assert main(args + [f"--set={s}" for s in SMALL]) == 0
    assert main(["evaluate", str(run), "--steps", "3", "--tasks", "20",
                 "--out", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert set(result["shots"]) == {"5", "10", "20"}
    assert result["shots"]["5"]["steps"] == [0, 1, 2, 3] and len(result["shots"]["5"]["ci95"]) == 4
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
    assert list(run.glob("events.out.tfevents.*"))
    assert (run / "config.yaml").exists()


def test_evaluation_is_reproducible(tmp_path):
    train(small_config("iterations=5"), tmp_path / "run", progress=False)
    a = evaluate_sinusoid(tmp_path / "run", steps=2, num_tasks=10, seed=3)
    b = evaluate_sinusoid(tmp_path / "run", steps=2, num_tasks=10, seed=3)
    c = evaluate_sinusoid(tmp_path / "run", steps=2, num_tasks=10, seed=4)
    assert a == b and a != c


def test_cli_reports_user_errors_in_one_line(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("kind: sinusoid\nshotz: 5\n")
    assert main(["train", str(config), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("metarl: error:") and "did you mean 'shots'" in err
    assert "\n" not in err
    assert not (tmp_path / "r").exists()


def test_test_time_step_sizes_follow_inner_lr_and_later_factor(tmp_path):
    """--inner-lr sets the first step, --later-factor the later ones; checked against a
    hand-written loop of plain gradient steps on the same support points."""
    import numpy as np

    from metarl.evaluate import load_run
    from metarl.functional import call
    from metarl.supervised import sinusoid
    from metarl.supervised.train import load_learner

    train(small_config("iterations=5"), tmp_path / "run", progress=False)
    result = evaluate_sinusoid(tmp_path / "run", steps=2, num_tasks=4, shots=(5,), seed=3,
                               inner_lr=0.05, later_factor=0.5)
    assert result["inner_lr"] == 0.05 and result["later_factor"] == 0.5
    config, state = load_run(tmp_path / "run")
    model, _ = load_learner(tmp_path / "run", config, state)
    rng = np.random.default_rng([3, 5])  # the evaluation's draws, in its order
    tasks = sinusoid.sample_sinusoids(rng, 4, config.amplitude_range, config.phase_range)
    support = sinusoid.sinusoid_points(rng, tasks, 5, config.input_range)
    query = sinusoid.sinusoid_points(rng, tasks, 100, config.input_range)
    expected = []
    for t in range(4):
        params = {k: v.detach().clone() for k, v in model.named_parameters()}
        errors = []
        for lr in (None, 0.05, 0.025):
            if lr is not None:
                params = {k: v.requires_grad_() for k, v in params.items()}
                loss = ((call(model, params, support[0][t]) - support[1][t]) ** 2).mean()
                grads = torch.autograd.grad(loss, list(params.values()))
                params = {k: (v - lr * g).detach() for (k, v), g in zip(params.items(), grads)}
            with torch.no_grad():
                errors.append(((call(model, params, query[0][t]) - query[1][t]) ** 2).mean())
        expected.append(errors)
    np.testing.assert_allclose(result["shots"]["5"]["mean"],
                               np.mean(np.array(expected), axis=0), rtol=1e-5)


def test_inner_lr_override_refused_for_learned_rates(tmp_path, capsys):
    run = tmp_path / "run"
    train(small_config("iterations=2", "method=metasgd"), run, progress=False)
    assert main(["evaluate", str(run), "--inner-lr", "0.1", "--tasks", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Meta-SGD" in err and "\n" not in err
    assert main(["evaluate", str(run), "--later-factor", "0.5", "--tasks", "2", "--steps", "2",
                 "--out", str(tmp_path / "e.json")]) == 0


def test_time_limit_stops_with_a_checkpoint_and_resume_finishes_the_same(tmp_path):
    train(small_config(), tmp_path / "full", progress=False)
    train(small_config("time_limit_minutes=1e-9"), tmp_path / "split", progress=False)
    stopped = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert stopped["iteration"] == 1  # the limit is over after the first iteration
    train(small_config(), tmp_path / "split", resume=True, progress=False)
    full = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    split = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert split["iteration"] == 40
    for k, v in full["model"].items():
        assert torch.equal(v, split["model"][k]), k
