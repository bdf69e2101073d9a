"""What makes a quick try quick changes no number a run reports: reading the decoded images from the
folder cache (`--data_cache_dir`) trains exactly as decoding the files does, and `--validation_steps`
shortens only the per-epoch validation, never training or the final evaluation in results.json."""

import csv
import pathlib

import pytest

from introspective_tf.training import experiment

pytestmark = pytest.mark.slow  # real training runs

REPORTED = ("train_loss_history", "final_train_metrics", "eval_accuracy", "eval_loss", "eval_nll", "eval_ece")


def _run(folder: pathlib.Path, dataset: str, **overrides) -> tuple[dict, list[dict]]:
    """results.json's numbers and history.csv's rows of a tiny deterministic run."""
    config = experiment.ExperimentConfig(
        dataset=dataset,
        method="standard",
        model="small_cnn",
        epochs=2,
        batch_size=20,
        steps_per_epoch=2,
        train_limit=100,
        eval_split="validation",
        validation_split=0.1,  # 100 images: 5 validation batches
        seed=3,
        deterministic=True,
        output_dir=str(folder),
        export_dir="none",
        verbose=0,
        explanation_images_every=0,  # drawn where it is tested (test_explanation_images.py)
        **overrides,
    )
    results = experiment.run(config)
    with open(folder / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    return {k: results[k] for k in REPORTED}, history


def test_the_cache_and_validation_steps_change_nothing_a_run_reports(tmp_path, mini_dataset):
    cache = str(tmp_path / "cache")
    files, files_history = _run(tmp_path / "files", mini_dataset, data_cache_dir="none")
    cached, cached_history = _run(tmp_path / "cached", mini_dataset, data_cache_dir=cache)
    assert list((tmp_path / "cache").glob("*.npz"))  # the cache was used
    assert cached == files and cached_history == files_history  # validation columns included

    capped, capped_history = _run(tmp_path / "capped", mini_dataset, data_cache_dir=cache, validation_steps=1)
    assert capped == files  # training and the final evaluation: all 5 batches
    assert [row["loss"] for row in capped_history] == [row["loss"] for row in files_history]
    assert float(files_history[-1]["val_loss"]) == pytest.approx(files["eval_loss"], rel=1e-5)
    assert [row["val_loss"] for row in capped_history] != [row["val_loss"] for row in files_history]  # 1 batch
