"""``metarl progress``: a run's iterations, time and block means, from its real files."""

import pytest

from metarl.cli import main
from metarl.compare import read_scalars
from metarl.config import load_config
from metarl.progress import block_means, seconds_spent, training_progress
from metarl.rl.families import make_family
from metarl.rl.train import train as train_rl
from metarl.supervised.train import train as train_sinusoid

TINY_RL = ["meta_batch_size=2", "episodes_per_task=2", "horizon=5", "hidden_sizes=[8]",
           "checkpoint_every=2"]


def test_seconds_spent_weights_each_point_by_the_iterations_it_stands_for():
    assert seconds_spent([1, 2, 3], [2.0, 3.0, 4.0]) == 9.0
    assert seconds_spent([10, 20, 25], [1.0, 2.0, 4.0]) == 10 + 20 + 20


def test_block_means_group_by_iteration_not_by_point():
    means = block_means([1, 2, 3, 4, 5, 9], [1.0, 3.0, 5.0, 7.0, 10.0, 20.0], every=4)
    assert means == {1: 4.0, 5: 10.0, 9: 20.0}


def test_progress_of_an_rl_run_reads_its_checkpoints_and_scalars(tmp_path, capsys):
    config = load_config(data={"kind": "rl"}, overrides=TINY_RL + ["iterations=7"])
    stopped = load_config(data={"kind": "rl"}, overrides=TINY_RL + ["iterations=5"])
    train_rl(stopped, make_family(stopped), tmp_path, progress=False)  # stop early, as a
    (tmp_path / "config.yaml").write_text((tmp_path / "config.yaml").read_text()  # time limit
                                          .replace("iterations: 5", "iterations: 7"))
    progress = training_progress(tmp_path, every=2)

    steps, before = read_scalars(tmp_path, "return/after_0_steps")
    _, after = read_scalars(tmp_path, "return/after_1_steps")
    _, seconds = read_scalars(tmp_path, "time/iteration")
    assert steps == [1, 2, 3, 4, 5]
    assert (progress["done"], progress["total"], progress["logged"]) == (5, config.iterations, 5)
    assert progress["hours"] == pytest.approx(sum(seconds) / 3600)
    assert progress["hours_left"] == pytest.approx(2 * sorted(seconds)[2] / 3600)
    assert progress["labels"] == ["before adaptation", "after 1 step"]
    assert [(first, last) for first, last, _ in progress["rows"]] == [(1, 2), (3, 4), (5, 5)]
    first_block = progress["rows"][0][2]
    assert first_block["before adaptation"] == pytest.approx(sum(before[:2]) / 2)
    assert first_block["after 1 step"] == pytest.approx(sum(after[:2]) / 2)
    assert 0 <= progress["best"] < 5

    assert main(["progress", str(tmp_path), "--every", "2"]) == 0
    out = capsys.readouterr().out
    assert "5 of 7 iterations checkpointed" in out and "h to go" in out
    assert f"{after[4] - before[4]:+.4g}" in out.splitlines()[-1]


def test_progress_of_a_supervised_run_counts_the_iterations_between_logs(tmp_path):
    config = load_config(data={"kind": "sinusoid"}, overrides=[
        "iterations=6", "meta_batch_size=2", "hidden_sizes=[8]", "log_every=3"])
    train_sinusoid(config, tmp_path, progress=False)
    progress = training_progress(tmp_path)
    steps, seconds = read_scalars(tmp_path, "time/seconds_per_iteration")
    assert steps == [3, 6] and progress["done"] == 6 and progress["hours_left"] == 0
    assert progress["hours"] == pytest.approx(3 * sum(seconds) / 3600)
    assert progress["best"] is None
    assert [row[:2] for row in progress["rows"]] == [(1, 3), (4, 6)]  # whole log periods


def test_progress_of_a_folder_without_a_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["progress", str(tmp_path)]) == 2
    assert "config.yaml" in capsys.readouterr().err
