r"""Trains every run of a comparison config that has no finished row, then writes its report and chart.

    python -m introspective_tf.tools.compare --config=configs/compare_cifar10.cfg

The config format and when a finished run is reused: `study.py`. After changing one line, one
method's defaults or the training code, re-running retrains only what changed; a crashed run resumes
from its backup. The report is made from the data file alone (`report.py`): `--notrain` regenerates
it on any machine without training.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from typing import Any

from introspective_tf import quiet
from introspective_tf.errors import ConfigError
from introspective_tf.tools import report, study
from introspective_tf.tools.study import TEACHER, RunSpec
from introspective_tf.training import experiment, records, run_lock


def train(run: RunSpec, teacher: RunSpec | None, data_path: str | None = None) -> dict[str, Any]:
    """Trains `run` in this process and adds its row to `data_path`. A stale run folder this tool made
    (another configuration or training code) is cleared first; a crashed run of the same configuration
    and code resumes from its backup. A folder this tool did not make is never touched, nor one that
    another process is training (`run_lock.FolderInUse`)."""
    with run_lock.hold(run.config.output_dir):
        return _train_locked(run, teacher, data_path)


def _train_locked(run: RunSpec, teacher: RunSpec | None, data_path: str | None) -> dict[str, Any]:
    import keras

    wanted = {**study.run_identity(run, teacher), "code_hash": study.current_code_hash(run.config.method)}
    folder = run.config.output_dir
    marker = os.path.join(folder, "compare_config.json")
    try:
        with open(marker) as f:
            same = json.load(f) == wanted
    except FileNotFoundError:
        if run_lock.contents(folder):
            raise ConfigError(
                f"{folder} holds a run of another configuration that this tool did not "
                "make: move it away or use another --runs_dir"
            ) from None
        same = False
    except (OSError, ValueError):
        same = False
    if not same:
        for name in run_lock.contents(folder):  # everything but the lock this process holds
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
    experiment.write_json(marker, wanted)
    keras.backend.clear_session()
    extra = {"compare_run": run.name, **({"teacher": wanted["teacher"]} if run.uses_teacher else {})}
    results = experiment.run(dataclasses.replace(run.config, hparams=dict(run.config.hparams)), extra_results=extra)
    results["train_eval_accuracy"] = training_set_accuracy(run.config, os.path.join(folder, "model.keras"))
    results["epoch_history"] = epoch_history(folder)
    if data_path:
        records.add(data_path, records.row_from_results(results))
    return results


def training_set_accuracy(config: experiment.ExperimentConfig, model_path: str) -> float:
    """Accuracy of the trained model on all its training images, unaugmented and in inference mode:
    whether the network fits its data (the running accuracy `fit` reports is over augmented images,
    in training mode, while the weights still move)."""
    import keras
    import numpy as np

    from introspective_tf.training import data as data_lib

    data = data_lib.load(
        config.dataset,
        batch_size=1,
        data_dir=config.data_dir,
        eval_split=config.eval_split,
        validation_split=config.validation_split,
        train_limit=config.train_limit,
        seed=config.seed,
        augment=False,
    )
    model = keras.models.load_model(model_path, compile=False)
    correct = total = 0
    for images, labels in data.train.unbatch().batch(256):
        predicted = np.argmax(model(images, training=False), axis=-1)
        correct += int(np.sum(predicted == labels.numpy()))
        total += len(predicted)
    return correct / total


def epoch_history(output_dir: str) -> dict[str, list[float]]:
    """The run's training metrics epoch by epoch, from its `history.csv` (`fit`'s CSVLogger), so how a
    run got where it ended (e.g. how far the introspective target is from the label early on) is data
    too. A resumed run may repeat an epoch's line: the last one counts. Validation columns are left
    out (they exist only every --validation_freq epochs)."""
    import csv

    by_epoch: dict[int, dict[str, str]] = {}
    with open(os.path.join(output_dir, "history.csv"), newline="") as f:
        for line in csv.DictReader(f):
            by_epoch[int(line["epoch"])] = line
    names = [n for n in next(iter(by_epoch.values()), {}) if n != "epoch" and not n.startswith("val_")]
    return {n: [round(float(by_epoch[e][n]), 5) for e in sorted(by_epoch)] for n in names}


def complete_rows(study_rows: list[dict], runs: list[RunSpec], teacher: RunSpec | None, data_path: str) -> int:
    """Adds what rows made before it was recorded lack (`train_eval_accuracy`, `epoch_history`) while
    their run folder still holds the run's files; returns how many rows it completed."""
    completed = 0
    for run in runs:
        row = study.finished_row(run, teacher, study_rows)
        if row is None:
            continue
        started = row.get("provenance", {}).get("date", "")

        def this_runs(file: str) -> str | None:
            """The run folder's `file`, unless it is missing or older than the row (another run's)."""
            path = os.path.join(run.config.output_dir, file)
            return path if os.path.exists(path) and started <= _modified(path) else None

        added = {}
        if "train_eval_accuracy" not in row and (model_path := this_runs("model.keras")):
            added["train_eval_accuracy"] = training_set_accuracy(run.config, model_path)
        if "epoch_history" not in row and this_runs("history.csv"):
            added["epoch_history"] = epoch_history(run.config.output_dir)
        if added:
            records.add(data_path, {**row, **added})
            completed += 1
    return completed


def _modified(path: str) -> str:
    import datetime

    stamp = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
    return stamp.isoformat(timespec="seconds")


def compare(
    config_path: str,
    runs_dir: str = "",
    report_path: str = "",
    chart_path: str = "",
    train_missing: bool = True,
    data_path: str = "",
    only: list[str] | None = None,
) -> list[tuple[RunSpec, list[dict]]]:
    """Trains what is missing (the teacher first; with `only`, just those run lines), then writes the
    report and the chart from the run data."""
    planned = study.load_study(config_path, runs_dir, report_path, chart_path, data_path)
    runs, teacher, data_path = planned.runs, planned.teacher, planned.data_path
    unknown = sorted(set(only or []) - {r.name for r in runs})
    if unknown:
        raise ConfigError(f"--runs names '{unknown[0]}', which is not a run line of {config_path}")
    rows = records.read(data_path)
    seeds_order = list(dict.fromkeys(r.config.seed for r in runs))
    # Seed by seed: if time runs out, every method has its first seeds.
    selected = [r for r in runs if not only or r.name in only]
    order = ([teacher] if teacher and any(r.uses_teacher for r in selected) else []) + sorted(
        selected, key=lambda r: seeds_order.index(r.config.seed)
    )
    failures = []
    for number, run in enumerate(order, 1):
        if study.is_done(run, teacher, rows):
            print(
                f"[{number}/{len(order)}] {run.name} seed {run.config.seed}: reusing a row of {data_path}", flush=True
            )
        elif train_missing:
            if run.uses_teacher and not os.path.exists(run.config.hparams["teacher"]):
                # The teacher's row may be data from another machine: its model file is not.
                print(
                    f"[{number}/{len(order)}] {TEACHER} seed {teacher.config.seed}: training (kd needs its model file)",
                    flush=True,
                )
                try:
                    train(teacher, teacher, data_path)
                except run_lock.FolderInUse:
                    raise  # another process is training this config: stop here, on one line
                except ConfigError as err:
                    failures.append(f"{run.name} seed {run.config.seed}: no teacher ({err})")
                    continue
                rows = records.read(data_path)
            print(f"[{number}/{len(order)}] {run.name} seed {run.config.seed}: training", flush=True)
            try:
                train(run, teacher, data_path)
                rows = records.read(data_path)
            except run_lock.FolderInUse:
                raise
            except ConfigError as err:
                failures.append(f"{run.name} seed {run.config.seed}: {err}")
                print(f"error: {failures[-1]}", file=sys.stderr, flush=True)
        else:
            print(f"[{number}/{len(order)}] {run.name} seed {run.config.seed}: missing", flush=True)
    if complete_rows(rows, runs + ([teacher] if teacher else []), teacher, data_path):
        rows = records.read(data_path)
    groups = study.group_results(runs, teacher, rows)
    if not any(results for _, results in groups):
        raise ConfigError(f"no finished run of this config in {data_path}")
    for path in (planned.report_path, planned.chart_path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    report.bar_chart(planned, groups)
    with open(planned.report_path, "w") as f:
        f.write(report.study_page(planned, groups))
    print(report.markdown_table(groups))
    print(f"wrote {planned.report_path} and {planned.chart_path}")
    if failures:
        raise ConfigError(f"{len(failures)} run(s) failed: {'; '.join(failures)}")
    return groups


def main(argv):
    from absl import flags

    del argv
    quiet.command_defaults()
    FLAGS = flags.FLAGS
    try:
        compare(FLAGS.config, FLAGS.runs_dir, FLAGS.report, FLAGS.chart, FLAGS.train, FLAGS.data, FLAGS.runs)
    except ConfigError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string(
        "config", None, "Comparison config: one run per line (see this module's docstring).", required=True
    )
    flags.DEFINE_string("runs_dir", "", "Folder of the runs; default runs/<config name>.")
    flags.DEFINE_string("report", "", "Markdown report to write; default <runs_dir>/results.md.")
    flags.DEFINE_string("chart", "", "PNG bar chart to write; default the report's path with .png.")
    flags.DEFINE_bool("train", True, "Train missing runs; --notrain only collects finished ones.")
    flags.DEFINE_list("runs", [], "Train only these run lines (the report still lists every line).")
    flags.DEFINE_string(
        "data", "", "JSON-lines file of finished runs; default the config's data line, else <runs_dir>/runs.jsonl."
    )
    app.run(main)
