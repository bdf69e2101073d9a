"""The comparison tool: config parsing, reuse of finished runs, and a short real comparison on cifar10-mini."""

import dataclasses
import json
import shutil

import pytest

from introspective_tf.errors import ConfigError
from introspective_tf.tools import compare, study
from introspective_tf.training import records

COMMON = (
    "common --dataset={data} --model=small_cnn --epochs=1 --steps_per_epoch=3 --batch_size=32 "
    "--learning_rate=0.05 --eval_split=validation --validation_split=0.1 --explanation_images_every=0\n"
)


@pytest.mark.parametrize(
    "text,message",
    [
        ("a --method=standard --smoothing=0.2\n", "method 'standard' takes no hyper-parameter 'smoothing'"),
        ("a --method=standard --colour=red\n", "line 1 \\(a\\): Unknown command line flag 'colour'"),
        ("a --method=standard --hparams=alpha=1\n", "Unknown command line flag 'hparams'"),
        ("a --method=standard --schedule=linear\n", "flag --schedule=linear: value should be one of"),
        ("a --method=kd\n", "need a 'teacher' line"),
        ("a --method=standard\na --method=dml\n", "used twice"),
        ("seeds zero\na --method=standard\n", "seeds must be integers"),
        ("a --method=standard --epochs=ten\n", "flag --epochs=ten: invalid literal for int"),
        ("a --method=label_smoothing --smoothing=lots\n", "flag --smoothing=lots: could not convert string to float"),
        ("a --method=teacher_free\n", "unknown method"),
        ("a method=standard\n", "expected --name=value"),
        ("common --epochs=2\n", "lists no run"),
    ],
)
def test_bad_configs_are_one_line_config_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        study.parse_config(text, "runs/x")


def test_runs_get_common_flags_seeds_and_the_teacher():
    runs, teacher = study.parse_config(
        "common --model=small_cnn --epochs=3\nseeds 4 5\nteacher --model=resnet20 --method=standard\n"
        "kd --method=kd --alpha=0.9 --epochs=2\nls --method=label_smoothing\n",
        "runs/x",
    )
    assert [(r.name, r.config.seed) for r in runs] == [("kd", 4), ("kd", 5), ("ls", 4), ("ls", 5)]
    assert runs[0].config.epochs == 2 and runs[2].config.epochs == 3 and teacher.config.model == "resnet20"
    assert runs[0].config.hparams == {
        "teacher": "runs/x/teacher-seed4/model.keras",
        "alpha": 0.9,
        "temperature": 4.0,
        "kd_target": "full",
        "true_mass": 0.0,
    }  # defaults filled in
    assert runs[2].config.hparams == {"smoothing": 0.1} and runs[2].config.output_dir == "runs/x/ls-seed4"


def test_a_stored_run_compares_by_its_resolved_hyper_parameters():
    stored = {
        "method": "label_smoothing",
        "seed": 0,
        "verbose": 1,
        "output_dir": "elsewhere",
        "hparams": {"alpha": 0.5, "temperature": 4.0},
    }  # train.py records every method flag
    same = {"method": "label_smoothing", "seed": 0, "verbose": 2, "hparams": {"smoothing": 0.1}}
    assert study.comparable(stored) == study.comparable(same)
    assert study.comparable(stored) != study.comparable({**same, "hparams": {"smoothing": 0.2}})


@pytest.mark.slow
def test_a_run_records_every_hyper_parameter_so_a_new_default_does_not_reuse_it(tmp_path, mini_dataset, monkeypatch):
    from introspective_tf import methods
    from introspective_tf.training import experiment

    config = experiment.ExperimentConfig(
        dataset=mini_dataset,
        method="label_smoothing",
        model="small_cnn",
        epochs=1,
        steps_per_epoch=1,
        batch_size=16,
        eval_split="validation",
        output_dir=str(tmp_path / "run"),
        export_dir="none",
        verbose=0,
    )
    stored = experiment.run(config)["config"]
    assert stored["hparams"]["smoothing"] == 0.1  # the default, written down although not given
    assert study.comparable(stored) == study.comparable(dataclasses.asdict(config))
    declared = methods.get("label_smoothing").hyperparameters()
    declared["smoothing"] = dataclasses.replace(declared["smoothing"], default=0.2)
    monkeypatch.setattr(methods.get("label_smoothing"), "hyperparameters", lambda: declared)
    assert study.comparable(stored) != study.comparable(dataclasses.asdict(config))


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("[")]


@pytest.mark.slow
def test_a_short_real_comparison_trains_reuses_and_reports(tmp_path, mini_dataset, capsys, monkeypatch):
    config = tmp_path / "mini.cfg"
    report = tmp_path / "docs" / "results.md"
    text = (
        COMMON.format(data=mini_dataset) + f"report {report}\nseeds 0\n"
        "teacher --method=standard\n"
        "label_smoothing --method=label_smoothing --smoothing=0.1\n"
        "kd --method=kd --kd_target=full --alpha=0.9 --temperature=4\n"
    )
    config.write_text(text)
    runs_dir = tmp_path / "runs"
    compare.compare(str(config), str(runs_dir))
    assert all(line.endswith("training") for line in _lines(capsys.readouterr().out))
    for name in ("teacher", "label_smoothing", "kd"):
        results = json.loads((runs_dir / f"{name}-seed0" / "results.json").read_text())
        assert results["compare_run"] == name and 0.0 <= results["eval_accuracy"] <= 1.0
    markdown = report.read_text()
    assert "| kd | kd | small_cnn | `--kd_target=full --alpha=0.9 --temperature=4` | 0 |" in markdown
    assert "not run" not in markdown and "validation split (100 images held out" in markdown
    assert (tmp_path / "docs" / "results.png").read_bytes()[:4] == b"\x89PNG"

    # One line changed: only that run trains again; everything else is reused.
    config.write_text(text.replace("--smoothing=0.1", "--smoothing=0.2"))
    compare.compare(str(config), str(runs_dir))
    status = {line.split(" seed")[0].split("] ")[1]: line.split(": ")[1] for line in _lines(capsys.readouterr().out)}
    assert status.pop("label_smoothing") == "training"
    data = runs_dir / "runs.jsonl"
    assert status == {name: f"reusing a row of {data}" for name in ("teacher", "kd")}
    assert (
        json.loads((runs_dir / "label_smoothing-seed0" / "results.json").read_text())["config"]["hparams"]["smoothing"]
        == 0.2
    )
    rows = records.read(str(data))
    assert len(rows) == 4 and all(
        r["provenance"]["code_hash"] and r["provenance"]["machine"]["cpu_count"] for r in rows
    )
    assert "train_loss_history" not in rows[0] and 0.0 <= rows[0]["final_train_metrics"]["accuracy"] <= 1.0
    assert all(0.0 <= r["train_eval_accuracy"] <= 1.0 for r in rows)
    assert all(len(r["epoch_history"]["accuracy"]) == r["epochs"] for r in rows)
    assert "val_accuracy" not in rows[0]["epoch_history"]

    # A row made before a measurement was recorded gets it from its run folder, when that still exists.
    older = next(r for r in rows if r["compare_run"] == "kd")
    records.add(str(data), {k: v for k, v in older.items() if k not in ("epoch_history", "train_eval_accuracy")})
    compare.compare(str(config), str(runs_dir))
    assert all(line.endswith(f"reusing a row of {data}") for line in _lines(capsys.readouterr().out))
    assert records.read(str(data))[-1]["epoch_history"] == older["epoch_history"]
    assert records.read(str(data))[-1]["train_eval_accuracy"] == older["train_eval_accuracy"]

    # --notrain makes the report from the data file alone (no run folders), and marks what is missing.
    shutil.rmtree(runs_dir / "kd-seed0")
    config.write_text(text + "dml --method=dml\n")
    compare.compare(str(config), str(runs_dir), train_missing=False)
    markdown = report.read_text()
    assert "| dml | dml | small_cnn | - | 0 | not run | - | - |" in markdown
    assert "| kd | kd | small_cnn |" in markdown and "| kd | kd | small_cnn | - | 0 |" not in markdown

    # Other training code: no row is reused for training, and the report marks the rows it still shows.
    monkeypatch.setattr(study, "current_code_hash", lambda method: "another-version")
    runs, teacher = study.parse_config(text.replace(str(report), "r.md"), str(runs_dir))
    assert not any(study.is_done(run, teacher, records.read(str(data))) for run in runs)
    compare.compare(str(config), str(runs_dir), train_missing=False)
    assert "| kd | kd | small_cnn | `--kd_target=full --alpha=0.9 --temperature=4` | 0† |" in report.read_text()
    assert "made by training code other than the current" in report.read_text()


def test_a_folder_the_tool_did_not_make_is_never_overwritten(tmp_path):
    runs, _ = study.parse_config("a --method=standard\n", str(tmp_path))
    folder = tmp_path / "a-seed0"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({"config": {"method": "standard", "seed": 9}}))
    with pytest.raises(ConfigError, match="did not make"):
        compare.train(runs[0], None)
    assert json.loads((folder / "results.json").read_text())["config"]["seed"] == 9


def test_run_data_rows_replace_reruns_and_bad_lines_are_one_line_errors(tmp_path):
    path = str(tmp_path / "data" / "runs.jsonl")
    row = {
        "compare_run": "a",
        "config": {"seed": 0, "output_dir": "x"},
        "provenance": {"code_hash": "h"},
        "eval_accuracy": 0.5,
    }
    records.add(path, row)
    records.add(path, {**row, "config": {"seed": 1}})
    records.add(path, {**row, "config": {"seed": 0, "output_dir": "y"}, "eval_accuracy": 0.6})  # a rerun of seed 0
    assert [(r["config"]["seed"], r["eval_accuracy"]) for r in records.read(path)] == [(1, 0.5), (0, 0.6)]
    with open(path, "a") as f:
        f.write("{not json\n")
    with pytest.raises(ConfigError, match="line 3: not a JSON row"):
        records.read(path)


def test_training_set_accuracy_counts_every_training_image_unaugmented(tmp_path, mini_dataset):
    import keras
    import numpy as np

    from introspective_tf import models
    from introspective_tf.training import data as data_lib
    from introspective_tf.training import experiment

    config = experiment.ExperimentConfig(
        dataset=mini_dataset, model="small_cnn", train_limit=70, eval_split="validation"
    )
    keras.utils.set_random_seed(0)
    model = models.small_cnn((32, 32, 3), 10)
    model.save(tmp_path / "m.keras")
    accuracy = compare.training_set_accuracy(config, str(tmp_path / "m.keras"))
    # By hand: the first 70 training images in dataset order (unshuffled, unaugmented), inference mode.
    raw = data_lib.load(mini_dataset, batch_size=70, eval_split="validation", train_limit=70, augment=False)
    images, labels = zip(*[(x, y) for x, y in raw.train.unbatch()])
    predicted = np.argmax(model(np.stack(images), training=False), -1)
    assert accuracy == np.mean(predicted == np.array(labels)) and len(labels) == 70
