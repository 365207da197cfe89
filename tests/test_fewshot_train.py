"""Few-shot meta-training end to end on a small generated Omniglot-layout data set."""

import json

import numpy as np
import pytest
import torch
from test_supervised_omniglot import make_zip

from metarl.checkpoint import load_checkpoint
from metarl.cli import main
from metarl.config import load_config
from metarl.supervised.datasets import load_classes
from metarl.supervised.fewshot_eval import evaluate_fewshot
from metarl.supervised.fewshot_train import sample_tasks, sample_training_tasks, train


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """12 characters in 2 alphabets (a block whose place is the character): an easy set."""
    root = tmp_path_factory.mktemp("omniglot")
    make_zip(root / "generated.zip", ["Greek", "Latin"], characters=6)
    return root


def small_config(data_dir, *overrides):
    """3-way 1-shot on a Conv4 with 8 filters; Latin's 24 rotated classes held out."""
    base = {"kind": "fewshot", "data_dir": str(data_dir), "archives": ["generated"],
            "test_alphabets": ["Latin"], "filters": 8, "ways": 3, "shots": 1,
            "query_shots": 2, "meta_batch_size": 4, "inner_lr": 0.4, "outer_lr": 0.01,
            "iterations": 40, "log_every": 10, "checkpoint_every": 20, "eval_inner_steps": 1}
    return load_config(data=base, overrides=list(overrides))


def held_out(run_dir):
    """(loss, accuracy) on 100 held-out tasks after the config's test-time steps."""
    result = evaluate_fewshot(run_dir, num_tasks=100)
    return result["loss"][-1], result["curve"]["mean"][-1]


@pytest.mark.parametrize("method", ["maml", "fomaml", "metasgd", "anil", "reptile", "tamaml"])
def test_every_method_trains_and_its_held_out_loss_falls(tmp_path, data_dir, method):
    # Reptile and ANIL learn through several inner steps (ANIL: the head alone).
    steps = 3 if method in ("reptile", "anil") else 1
    settings = (f"method={method}", f"inner_steps={steps}", f"eval_inner_steps={steps}")
    train(small_config(data_dir, *settings, "iterations=1"), tmp_path / "zero", progress=False)
    metrics = train(small_config(data_dir, *settings), tmp_path / "run", progress=False)
    (loss, accuracy), (loss_zero, _) = held_out(tmp_path / "run"), held_out(tmp_path / "zero")
    assert loss < 0.85 * loss_zero
    assert accuracy > 1 / 3 + 0.05  # 3-way: chance is 1/3
    assert metrics["accuracy/query_after_adaptation"] > 1 / 3


def test_loop_adaptation_checkpointing_and_clipping_train(tmp_path, data_dir):
    # Equality of the gradients is tested in float64 (test_fewshot_adapt.py); here the options
    # run end to end. Recomputing the inner steps repeats the same float32 operations.
    runs = {}
    for name, extra in [("loop", ("adapt=loop",)), ("vmap", ("adapt=vmap",)),
                        ("grouped", ("adapt=grouped",)),
                        ("plain", ("inner_steps=2", "grad_clip=0.5")),
                        ("recompute", ("inner_steps=2", "grad_clip=0.5",
                                       "grad_checkpointing=true"))]:
        train(small_config(data_dir, "iterations=3", *extra), tmp_path / name, progress=False)
        runs[name] = load_checkpoint(tmp_path / name / "checkpoint.pt")["model"]
    # A per-task loop takes the same steps as vmap; not compared: the conv biases, whose
    # true gradient is 0 (batch norm follows), so Adam turns rounding into +-lr steps.
    for k, v in runs["vmap"].items():
        if ".convs." not in f".{k}" or not k.endswith(".bias"):
            torch.testing.assert_close(runs["loop"][k], v, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(runs["grouped"][k], v, rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(runs["vmap"][k], runs["plain"][k]) for k in runs["vmap"])
    for k, v in runs["plain"].items():
        torch.testing.assert_close(runs["recompute"][k], v, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("augment", [[], ["augment_rotation=15", "augment_shift=2",
                                           "augment_scale=0.1"]], ids=["plain", "augmented"])
def test_resume_gives_the_same_parameters(tmp_path, data_dir, augment):
    train(small_config(data_dir, *augment), tmp_path / "full", progress=False)
    train(small_config(data_dir, "iterations=20", *augment), tmp_path / "split", progress=False)
    train(small_config(data_dir, *augment), tmp_path / "split", resume=True, progress=False)
    full = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["model"]
    split = load_checkpoint(tmp_path / "split" / "checkpoint.pt")["model"]
    for k, v in full.items():
        assert torch.equal(v, split[k]), k


def test_augmentation_distorts_training_tasks_only_when_asked(data_dir):
    plain = small_config(data_dir)
    augmented = small_config(data_dir, "augment_shift=2")
    images = load_classes(plain, "train").images
    support, query = sample_tasks(np.random.default_rng(0), images, plain, 4)
    same = sample_training_tasks(np.random.default_rng(0), images, plain, 4)
    moved = sample_training_tasks(np.random.default_rng(0), images, augmented, 4)
    assert torch.equal(same[0][0], support[0]) and torch.equal(same[1][0], query[0])
    assert torch.equal(moved[0][1], support[1])  # the same tasks, labels as they were
    assert moved[0][0].shape == support[0].shape
    assert not torch.allclose(moved[0][0], support[0], atol=1e-3)


def test_resume_may_switch_the_adapt_mode(tmp_path, data_dir):
    # The modes compute the same meta-gradient, so a run may continue on a faster one.
    train(small_config(data_dir, "iterations=20", "adapt=vmap"), tmp_path / "run",
          progress=False)
    train(small_config(data_dir, "adapt=grouped"), tmp_path / "run", resume=True,
          progress=False)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["iteration"] == 40


def test_cli_train_and_evaluate_write_json_csv_png(tmp_path, data_dir, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("kind: fewshot\n")
    overrides = [f"--set={k}={v}" for k, v in {
        "data_dir": data_dir, "archives": "[generated]", "test_alphabets": "[Latin]",
        "filters": 8, "ways": 3, "meta_batch_size": 2, "iterations": 4, "log_every": 2}.items()]
    run = tmp_path / "run"
    assert main(["train", str(config), "--run-dir", str(run), "--quiet", *overrides]) == 0
    assert main(["evaluate", str(run), "--tasks", "30", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "omniglot 3-way 1-shot: 0 steps" in out
    result = json.loads((run / "evaluation.json").read_text())
    assert result["metric"] == "accuracy" and result["curve"]["steps"] == [0, 1, 2]
    assert len(result["per_task"]) == 30 and all(0 <= a <= 1 for a in result["curve"]["mean"])
    assert (run / "evaluation.png").read_bytes()[:4] == b"\x89PNG"
    rows = (run / "evaluation.csv").read_text().splitlines()
    assert rows[0] == "task,step,accuracy" and len(rows) == 1 + 30 * 3
    assert list(run.glob("events.out.tfevents.*"))


def test_evaluation_is_reproducible(tmp_path, data_dir):
    train(small_config(data_dir, "iterations=2"), tmp_path / "run", progress=False)
    a = evaluate_fewshot(tmp_path / "run", steps=2, num_tasks=60, seed=3)
    b = evaluate_fewshot(tmp_path / "run", steps=2, num_tasks=60, seed=3)
    c = evaluate_fewshot(tmp_path / "run", steps=2, num_tasks=60, seed=4)
    assert a == b and a["per_task"] != c["per_task"]

