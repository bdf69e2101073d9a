"""Interrupted and diverging runs: SIGKILL and restart continues; NaN keeps the last good weights; determinism."""

import json
import os
import signal
import subprocess
import sys
import time

import background
import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO

from introspective_tf.errors import ConfigError
from introspective_tf.training import data as data_lib
from introspective_tf.training import experiment, resume


def _command(dataset, run_dir, *flags):
    return [
        sys.executable,
        str(REPO / "train.py"),
        f"--dataset={dataset}",
        "--model=small_cnn",
        f"--output_dir={run_dir}",
        "--export_dir=none",
        "--verbose=2",
        "--explanation_images_every=0",  # drawn where it is tested (test_explanation_images.py)
        *flags,
    ]


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _history_epochs(run_dir):
    lines = (run_dir / "history.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,")
    return [int(line.split(",")[0]) for line in lines[1:]]


RESUMED = ["introspective", "pskd"]  # pskd: its per-example store is in the backup


def _kill_mid_training_then_resume(dataset, run_dir, method) -> dict:
    """Trains, SIGKILLs the process once its backup holds epoch 2, runs the same command again; what the
    test reads."""
    command = _command(
        dataset,
        run_dir,
        f"--method={method}",
        "--epochs=5",
        "--batch_size=20",
        "--steps_per_epoch=15",
        "--train_limit=300",
    )
    state = run_dir / "backup" / "state.json"
    process = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (state.exists() and json.loads(state.read_text())["epoch"] >= 2):
            assert process.poll() is None, "training ended before it could be interrupted"
            assert time.monotonic() < deadline, "no backup after 300 s"
            time.sleep(0.05)
        time.sleep(0.3)  # into the next epoch
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed = {
        "results_written": (run_dir / "results.json").exists(),
        "saved_epoch": json.loads(state.read_text())["epoch"],
        "history_epochs": _history_epochs(run_dir),
    }
    resumed = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    return {"killed": killed, "resumed": resumed, "run_dir": run_dir}


@background.fixture
def killed_and_resumed(folder) -> dict:
    """{method: what its killed and resumed train.py run left}, in the background (tests/background.py;
    `background.each`: an error fails only that method's test)."""
    from conftest import MINI

    if not (MINI / "train").is_dir():
        pytest.skip(f"real data not found at {MINI} (set INTROSPECTIVE_DATA)")
    return background.each(
        RESUMED, lambda method: _kill_mid_training_then_resume(f"folder:{MINI}", folder / method, method)
    )


@pytest.mark.slow
@pytest.mark.parametrize("method", RESUMED)
def test_sigkill_mid_training_then_same_command_resumes_and_finishes(killed_and_resumed, method):
    outcome = killed_and_resumed[method]
    killed, resumed, run_dir = outcome["killed"], outcome["resumed"], outcome["run_dir"]
    assert not killed["results_written"]
    saved_epoch = killed["saved_epoch"]
    assert 2 <= saved_epoch < 5
    assert killed["history_epochs"][:saved_epoch] == list(range(saved_epoch))

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["resumed_from_epoch"] == saved_epoch
    assert len(results["train_loss_history"]) == 5 - saved_epoch  # only the remaining epochs ran
    assert _history_epochs(run_dir) == [0, 1, 2, 3, 4]  # every epoch exactly once
    assert not (run_dir / "backup").exists()  # removed once training finished
    model = keras.models.load_model(run_dir / "model.keras")
    assert np.all(np.isfinite(model(np.zeros((1, 32, 32, 3), "float32"))))


@pytest.fixture
def op_determinism():
    from tensorflow.python.framework import config as tf_config  # no public query or switch back

    yield tf_config.is_op_determinism_enabled
    tf_config.disable_op_determinism()  # leave the other tests as they were


@pytest.mark.slow
def test_deterministic_runs_with_the_same_seed_give_identical_results(tmp_path, mini_dataset, op_determinism):
    def run(name, seed):
        config = experiment.ExperimentConfig(
            dataset=mini_dataset,
            method="introspective",
            model="small_cnn",
            epochs=2,
            batch_size=20,
            steps_per_epoch=3,
            train_limit=100,
            seed=seed,
            deterministic=True,
            output_dir=str(tmp_path / name),
            export_dir="none",
            verbose=0,
            explanation_images_every=0,  # drawn where it is tested (test_explanation_images.py)
        )
        experiment.run(config)
        results = json.loads((tmp_path / name / "results.json").read_text())
        return {k: results[k] for k in ("eval_accuracy", "eval_loss", "train_loss_history", "final_train_metrics")}

    first = run("a", seed=3)
    assert op_determinism()
    assert run("b", seed=3) == first
    assert run("c", seed=4) != first  # the seed matters, so equality above is not a constant


def _nan_after(batches):
    """Wraps `data.load` so that every training batch from number `batches` on has NaN pixels."""
    load = data_lib.load

    def poisoned(*args, **kwargs):
        data = load(*args, **kwargs)
        numbered = tf.data.Dataset.zip((data.train.repeat(), tf.data.Dataset.counter()))
        data.train = numbered.map(lambda batch, i: (tf.where(i >= batches, np.nan, batch[0]), batch[1]))
        return data

    return poisoned


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, mini_dataset, monkeypatch):
    monkeypatch.setattr(data_lib, "load", _nan_after(batches=6))  # epochs 1-2 good, epoch 3 diverges
    config = experiment.ExperimentConfig(
        dataset=mini_dataset,
        method="standard",
        model="small_cnn",
        epochs=4,
        batch_size=20,
        steps_per_epoch=3,
        train_limit=100,
        output_dir=str(tmp_path / "run"),
        export_dir="none",
        verbose=0,
        explanation_images_every=0,  # drawn where it is tested (test_explanation_images.py)
    )
    with pytest.raises(ConfigError, match=r"training diverged .* the last good weights \(epoch 2\) are in"):
        experiment.run(config)
    checkpoint = tmp_path / "run" / "checkpoints" / "last.weights.h5"
    weights = []
    with h5py.File(checkpoint) as f:
        f.visititems(lambda name, item: weights.append(item[()]) if hasattr(item, "dtype") else None)
    assert weights and all(np.all(np.isfinite(w)) for w in weights)
    assert _history_epochs(tmp_path / "run") == [0, 1, 2]  # the diverged epoch is logged, not saved
    assert not (tmp_path / "run" / "results.json").exists()


def test_a_run_that_diverges_in_its_first_epoch_stops_with_one_message_and_writes_no_weights(
    tmp_path, mini_dataset, monkeypatch
):
    """The quick subset's check of the divergence stop (the one above, slow, keeps a good epoch's weights)."""
    monkeypatch.setattr(data_lib, "load", _nan_after(batches=0))
    config = experiment.ExperimentConfig(
        dataset=mini_dataset,
        method="standard",
        model="small_cnn",
        epochs=1,
        batch_size=8,
        steps_per_epoch=1,
        train_limit=16,
        eval_split="validation",
        output_dir=str(tmp_path / "run"),
        export_dir="none",
        verbose=0,
        explanation_images_every=0,  # drawn where it is tested (test_explanation_images.py)
    )
    with pytest.raises(ConfigError, match=r"training diverged .* no epoch of this run ended with finite weights"):
        experiment.run(config)
    assert not (tmp_path / "run" / "checkpoints" / "last.weights.h5").exists()
    assert not (tmp_path / "run" / "results.json").exists()


def test_trim_history_keeps_earlier_runs_and_drops_epochs_to_rerun(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,1.0\n1,0.9\n0,2.0\n1,1.5\n2,1.2\n3,1.")  # a finished run, then one killed
    resume.trim_history_csv(str(path), first_epoch_to_run=2)
    assert path.read_text() == "epoch,loss\n0,1.0\n1,0.9\n0,2.0\n1,1.5\n"
    resume.trim_history_csv(str(path), first_epoch_to_run=0)  # a fresh start appends, never trims
    assert path.read_text() == "epoch,loss\n0,1.0\n1,0.9\n0,2.0\n1,1.5\n"


def _small_trainer():
    from introspective_tf import methods, models

    trainer = methods.build("standard", models.small_cnn((8, 8, 3), 4))
    trainer.compile(optimizer=keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.1, 100), momentum=0.9))
    return trainer


def test_backup_restores_weights_and_optimizer_state_and_skips_nan_epochs(tmp_path):
    rng = np.random.default_rng(0)
    images, labels = rng.uniform(0, 255, (16, 8, 8, 3)).astype("float32"), rng.integers(0, 4, 16)
    trained, backup = _small_trainer(), resume.Backup(str(tmp_path / "backup"))
    backup.set_model(trained)
    trained.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    backup.on_epoch_end(0, {"loss": 1.0})
    backup.on_epoch_end(1, {"loss": float("nan")})  # a diverged epoch is not backed up
    assert json.loads((tmp_path / "backup" / "state.json").read_text())["epoch"] == 1

    restored = _small_trainer()
    assert resume.Backup(str(tmp_path / "backup")).restore(restored) == 1
    assert int(restored.optimizer.iterations.numpy()) == 2  # the learning-rate schedule continues
    for a, b in zip(trained.optimizer.variables + trained.weights, restored.optimizer.variables + restored.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
