"""Run directories: nothing saved is ever overwritten, every refusal is one line."""

import os

import pytest

from metarl.checkpoint import load_checkpoint
from metarl.cli import main

SMALL = ["--set=meta_batch_size=2", "--set=episodes_per_task=2", "--set=horizon=10",
         "--set=hidden_sizes=[8]", "--set=eval_episodes=2", "--set=eval_samples=null"]


def train(run, *extra):
    return main(["train", "experiments/configs/navigation-2d.yaml", "--run-dir", str(run),
                 "--quiet", "--set=iterations=2", *SMALL, *extra])


@pytest.mark.parametrize("leftover", ["best.pt", "events.out.tfevents.123.host.1.0",
                                      "evaluation.json", "config.yaml"])
def test_a_folder_with_any_run_file_is_refused_and_left_alone(tmp_path, capsys, leftover):
    run = tmp_path / "run"
    run.mkdir()
    (run / leftover).write_bytes(b"an earlier run's file")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert train(run) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"already holds a run ({leftover})" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resume_removes_stale_checkpoint_temp_files_only(tmp_path):
    run = tmp_path / "run"
    assert train(run) == 0
    stale = [run / "checkpoint.pt.x1y2.tmp", run / "best.pt.a9b8.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    keep = run / "notes.tmp"
    keep.write_text("mine")
    assert train(run, "--resume", "--set=iterations=3") == 0
    assert not any(path.exists() for path in stale)
    assert keep.read_text() == "mine"
    assert load_checkpoint(run / "checkpoint.pt")["iteration"] == 3


def test_resume_without_checkpoint_names_the_best_iterate(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run) == 0
    os.remove(run / "checkpoint.pt")
    capsys.readouterr()
    assert train(run, "--resume") == 2
    assert "no checkpoint.pt, only best.pt" in capsys.readouterr().err


def test_resuming_a_finished_run_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run) == 0
    capsys.readouterr()
    assert train(run, "--resume") == 0
    assert "nothing to train, the run has reached its 2 iterations" in capsys.readouterr().out


def test_evaluate_counts_are_taken_as_given_or_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run) == 0
    out = tmp_path / "zero.json"
    assert main(["evaluate", str(run), "--steps", "0", "--tasks", "3", "--out", str(out)]) == 0
    import json
    result = json.loads(out.read_text())
    assert len(result["curve"]["mean"]) == 1 and result["tasks"] == 3  # not the defaults
    for flag, value in [("--tasks", "0"), ("--episodes", "0"), ("--steps", "-1"),
                        ("--tasks", "-1")]:
        with pytest.raises(SystemExit) as stop:
            main(["evaluate", str(run), flag, value])
        assert stop.value.code == 2
        assert f"argument {flag}: must be >=" in capsys.readouterr().err
    assert not (run / "evaluation.json").exists()


def start_training(run, config, *extra, sigint=None):
    """``sigint``: the SIGINT disposition the child inherits (None: this process's)."""
    import signal
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen(
        [sys.executable, "-m", "metarl", "train", config, "--run-dir", str(run), "--quiet",
         "--set=iterations=100000", "--set=checkpoint_every=100000", "--set=threads=1",
         *extra], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=None if sigint is None else lambda: signal.signal(signal.SIGINT, sigint))


def wait_for(path, process, seconds=120):
    import time
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.1)


@pytest.mark.parametrize("config,first_file,extra", [
    ("experiments/configs/navigation-2d.yaml", "best.pt", SMALL),
    ("experiments/configs/sinusoid.yaml", "events.out.tfevents.*", ["--set=log_every=1"])])
def test_ctrl_c_checkpoints_the_last_finished_iteration_and_says_how_to_resume(
        tmp_path, config, first_file, extra):
    import signal
    run = tmp_path / "run"
    process = start_training(run, config, *extra)
    while not list(run.glob(first_file)):  # a first iteration has finished
        assert process.poll() is None, process.stderr.read()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) <= 2, err
    assert "stopped at iteration" in lines[-1] and "--resume --run-dir" in lines[-1]
    iteration = int(lines[-1].split("stopped at iteration ")[1].split(";")[0])
    assert load_checkpoint(run / "checkpoint.pt")["iteration"] == iteration >= 1


@pytest.mark.parametrize("inherited", ["SIG_DFL", "SIG_IGN"])  # SIG_IGN: as `cmd &` starts it
def test_a_second_ctrl_c_stops_at_once(tmp_path, inherited):
    import signal
    import time

    run = tmp_path / "run"
    process = start_training(run, "experiments/configs/navigation-2d.yaml",
                             "--set=horizon=100", "--set=meta_batch_size=40",
                             "--set=episodes_per_task=100",  # iterations of several seconds
                             sigint=getattr(signal, inherited))
    wait_for(run / "config.yaml", process)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    # As a user would: again once the first was taken (two signals arriving during one
    # long C call reach Python as one).
    first = process.stderr.readline()
    assert "stopping after this iteration" in first
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in err and "stopped at once" in err.splitlines()[-1], err


def test_kept_snapshots_are_the_checkpoints_of_their_iterations(tmp_path):
    run = tmp_path / "run"
    assert train(run, "--set=iterations=5", "--set=checkpoint_every=100",
                 "--set=keep_checkpoint_every=2") == 0
    assert sorted(p.name for p in run.glob("checkpoint-*.pt")) == [
        "checkpoint-2.pt", "checkpoint-4.pt"]
    assert load_checkpoint(run / "checkpoint-4.pt")["iteration"] == 4
    # Resuming from the last one (iteration 5) trains on and keeps the next snapshot.
    assert train(run, "--resume", "--set=iterations=6", "--set=keep_checkpoint_every=3") == 0
    assert (run / "checkpoint-6.pt").exists()
    second = tmp_path / "second"
    assert train(second, "--set=iterations=4", "--set=checkpoint_every=100",
                 "--set=keep_checkpoint_every=2") == 0
    for name in ("model", "rng"):  # the snapshot of iteration 4 is that iteration's state
        assert str(load_checkpoint(second / "checkpoint-4.pt")[name]) == str(
            load_checkpoint(run / "checkpoint-4.pt")[name])


def test_a_folder_with_only_kept_snapshots_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint-1000.pt").write_bytes(b"an earlier snapshot")
    assert train(run) == 2
    assert "already holds a run (checkpoint-1000.pt)" in capsys.readouterr().err
