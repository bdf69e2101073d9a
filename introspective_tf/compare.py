r"""Runs every method of a comparison over several seeds, then writes a Markdown report and a bar chart.

    python -m introspective_tf.compare --config=configs/compare_cifar10.cfg

The config lists one run per line, `NAME --flag=value ...` with train.py's flag names:

    common  --dataset=folder:../shared/data/cifar10 --model=small_cnn --epochs=10   # every run
    seeds   0 1                                                                     # each run line, per seed
    report  docs/results.md                          # where to write the report (chart: same name, .png)
    data    results/compare_cifar10.jsonl            # finished runs, one JSON row each (committed)
    teacher --model=resnet32 --method=standard       # trained once; kd runs without --teacher use it
    standard --method=standard
    kd_full --method=kd --kd_target=full --alpha=0.9 --temperature=4

Every finished run is a row of the `data` file (its results.json without the loss history, with the
code version, date and machine: `provenance.py`). A run whose row holds the same configuration (after
the method's defaults are filled in) *and* the same training code (`code_hash`) is reused, not
retrained: after changing one line, one method's defaults or the training code, re-running retrains
only what changed. The report is made from the data file alone: `--notrain` regenerates it on any
machine without training.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import shlex
import shutil
import statistics
import sys
from typing import Any

from introspective_tf import equivalence, experiment, methods, provenance, quiet, records
from introspective_tf.errors import ConfigError

# Fields that change where a run writes or how much it prints, not what it learns.
_NOT_COMPARED = ("output_dir", "export_dir", "verbose", "validation_freq")
_CONFIG_TYPES = {f.name: f.type for f in dataclasses.fields(experiment.ExperimentConfig)}
TEACHER = "teacher"


@dataclasses.dataclass
class RunSpec:
    name: str  # the config line's name: one row of the table
    flags: dict[str, str]  # the line's own flags (shown in the table)
    config: experiment.ExperimentConfig
    uses_teacher: bool = False  # kd without --teacher: gets the config's teacher


def _parse_flags(tokens: list[str], where: str) -> dict[str, str]:
    values = {}
    for token in tokens:
        if not token.startswith("--") or "=" not in token:
            raise ConfigError(f"{where}: expected --name=value, not '{token}'")
        key, value = token[2:].split("=", 1)
        values[key] = value
    return values


def _cast(value: str, kind: Any, name: str, where: str) -> Any:
    try:
        if kind in (bool, "bool"):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return value.lower() in ("true", "1")
        if kind in (int, "int"):
            return int(value)
        if kind in (float, "float"):
            return float(value)
    except ValueError:
        raise ConfigError(f"{where}: --{name}={value} is not a valid {getattr(kind, '__name__', kind)}") from None
    return value


def _make_config(flags: dict[str, str], where: str) -> experiment.ExperimentConfig:
    fields, hparams = {}, {}
    for key, value in flags.items():
        if key == "hparams":
            raise ConfigError(f"{where}: give hyper-parameters as their own flags, not --hparams")
        if key in _CONFIG_TYPES:
            kind = _CONFIG_TYPES[key]
            fields[key] = None if value == "" and "None" in str(kind) else _cast(value, kind, key, where)
        else:
            hparams[key] = value
    config = experiment.ExperimentConfig(**fields)
    config.hparams = methods.resolve(config.method, hparams, where)
    return config


SETTINGS = ("common", "seeds", "report", "data")


def read_setting(text: str, key: str) -> str:
    """The config's `KEY VALUE` line (`report PATH`, `data PATH`), or ""."""
    for line in text.splitlines():
        tokens = shlex.split(line, comments=True)
        if len(tokens) == 2 and tokens[0] == key:
            return tokens[1]
    return ""


def read_report_path(text: str) -> str:
    return read_setting(text, "report")


def parse_config(text: str, runs_dir: str) -> tuple[list[RunSpec], RunSpec | None]:
    """The config's runs (one per line and seed) and its teacher, with output folders under `runs_dir`."""
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        tokens = shlex.split(line, comments=True)
        if tokens:
            lines.append((number, tokens[0], tokens[1:]))
    common, seeds = {}, [0]
    for number, name, rest in lines:
        if name == "common":
            common.update(_parse_flags(rest, f"line {number}"))
        elif name == "seeds":
            try:
                seeds = [int(s) for s in rest]
            except ValueError:
                raise ConfigError(f"line {number}: seeds must be integers, not {' '.join(rest)}") from None
    if not seeds:
        raise ConfigError("the seeds line lists no seed")
    common.setdefault("export_dir", "none")

    def spec(name, own, seed, number):
        flags = {**common, **own, "seed": str(seed)}
        config = _make_config(flags, f"line {number} ({name})")
        config.output_dir = os.path.join(runs_dir, f"{name}-seed{seed}")
        config.verbose = config.verbose if "verbose" in flags else 2
        return RunSpec(name, own, config, uses_teacher=config.method == "kd" and not own.get("teacher"))

    runs, teacher, names = [], None, set()
    for number, name, rest in lines:
        if name in SETTINGS:
            continue
        if name in names:
            raise ConfigError(f"line {number}: run name '{name}' is used twice")
        names.add(name)
        own = _parse_flags(rest, f"line {number} ({name})")
        if name == TEACHER:
            teacher = spec(name, own, int(own.get("seed", seeds[0])), number)
        else:
            runs.extend(spec(name, own, seed, number) for seed in seeds)
    if not runs:
        raise ConfigError("the config lists no run")
    if any(run.uses_teacher for run in runs):
        if teacher is None:
            raise ConfigError("kd runs without --teacher need a 'teacher' line in the config")
        for run in runs:
            if run.uses_teacher:
                run.config.hparams["teacher"] = os.path.join(teacher.config.output_dir, "model.keras")
    return runs, teacher


def _with_new_fields(config: dict[str, Any]) -> dict[str, Any]:
    """Settings added to ExperimentConfig after a run was made count as their defaults for that run."""
    defaults = {k: v for k, v in dataclasses.asdict(experiment.ExperimentConfig()).items() if k != "hparams"}
    return json.loads(json.dumps({**defaults, **config}, sort_keys=True, default=str))


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A run's configuration as compared for reuse: the method's hyper-parameters resolved."""
    config = {k: v for k, v in _with_new_fields(config).items() if k not in _NOT_COMPARED}
    declared = methods.get(config["method"]).hyperparameters()  # older train.py runs recorded every method's flags
    config["hparams"] = methods.resolve(
        config["method"], {k: v for k, v in config.get("hparams", {}).items() if k in declared}
    )
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def _wanted(run: RunSpec, teacher: RunSpec | None) -> dict[str, Any]:
    wanted = {"config": comparable(dataclasses.asdict(run.config))}
    if run.uses_teacher:
        wanted["teacher"] = comparable(dataclasses.asdict(teacher.config))
    return wanted


@functools.lru_cache(maxsize=None)
def current_code_hash(method: str) -> str:
    """The training code's version for runs of `method` (provenance.code_hash of its files now)."""
    return provenance.code_hash(os.path.basename(inspect.getfile(methods.get(method))))


def _found(row: dict[str, Any]) -> dict[str, Any] | None:
    try:
        found = {"config": comparable(row["config"])}
    except (ConfigError, KeyError):  # a method that no longer exists, or not a run row
        return None
    if isinstance(row.get("teacher"), dict):
        found["teacher"] = comparable(row["teacher"])
    return found


def finished_row(
    run: RunSpec, teacher: RunSpec | None, rows: list[dict[str, Any]], any_code: bool = False
) -> dict[str, Any] | None:
    """The newest row of `rows` made by the same configuration (for kd, the same teacher) and the same
    training code as `run` would be now; None if there is none. `any_code=True`: if no row of the
    current code exists, the newest row of the same configuration made by other training code."""
    wanted = _wanted(run, teacher)
    same_config = [row for row in rows if _found(row) == wanted]
    for row in reversed(same_config):
        if made_by_current_code(row):
            return row
    return same_config[-1] if any_code and same_config else None


def accepted_code_hashes(method: str) -> frozenset[str]:
    """The current code's hash for `method` and those shown to train identically (equivalence.py)."""
    return frozenset(equivalence.accepted_code_hashes(current_code_hash(method)))


def made_by_current_code(row: dict[str, Any]) -> bool:
    return row.get("provenance", {}).get("code_hash") in accepted_code_hashes(row["config"]["method"])


def is_done(run: RunSpec, teacher: RunSpec | None, rows: list[dict[str, Any]]) -> bool:
    return finished_row(run, teacher, rows) is not None


def train(run: RunSpec, teacher: RunSpec | None, data_path: str | None = None) -> dict[str, Any]:
    """Trains `run` in this process and adds its row to `data_path`. A stale run folder this tool made
    (another configuration or training code) is cleared first; a crashed run of the same configuration
    and code resumes from its backup. A folder this tool did not make is never touched."""
    import keras

    wanted = {**_wanted(run, teacher), "code_hash": current_code_hash(run.config.method)}
    marker = os.path.join(run.config.output_dir, "compare_config.json")
    try:
        with open(marker) as f:
            same = json.load(f) == wanted
    except FileNotFoundError:
        if os.path.isdir(run.config.output_dir) and os.listdir(run.config.output_dir):
            raise ConfigError(
                f"{run.config.output_dir} holds a run of another configuration that this tool did not "
                "make: move it away or use another --runs_dir"
            ) from None
        same = False
    except (OSError, ValueError):
        same = False
    if not same and os.path.isdir(run.config.output_dir):
        shutil.rmtree(run.config.output_dir)
    os.makedirs(run.config.output_dir, exist_ok=True)
    experiment.write_json(marker, wanted)
    keras.backend.clear_session()
    extra = {"compare_run": run.name, **({"teacher": wanted["teacher"]} if run.uses_teacher else {})}
    results = experiment.run(dataclasses.replace(run.config, hparams=dict(run.config.hparams)), extra_results=extra)
    results["train_eval_accuracy"] = training_set_accuracy(
        run.config, os.path.join(run.config.output_dir, "model.keras")
    )
    if data_path:
        records.add(data_path, records.row_from_results(results))
    return results


def training_set_accuracy(config: experiment.ExperimentConfig, model_path: str) -> float:
    """Accuracy of the trained model on all its training images, unaugmented and in inference mode:
    whether the network fits its data (the running accuracy `fit` reports is over augmented images,
    in training mode, while the weights still move)."""
    import keras
    import numpy as np

    from introspective_tf import data as data_lib

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


def complete_training_set_accuracy(
    study_rows: list[dict], runs: list[RunSpec], teacher: RunSpec | None, data_path: str
) -> int:
    """Adds `train_eval_accuracy` to finished rows that lack it while their run folder still holds the
    model (rows made before it was measured); returns how many rows it completed."""
    completed = 0
    for run in runs:
        row = finished_row(run, teacher, study_rows)
        model_path = os.path.join(run.config.output_dir, "model.keras")
        if row is None or "train_eval_accuracy" in row or not os.path.exists(model_path):
            continue
        if row.get("provenance", {}).get("date", "") > _modified(model_path):
            continue  # the model file is older than the row: not this run's model
        records.add(data_path, {**row, "train_eval_accuracy": training_set_accuracy(run.config, model_path)})
        completed += 1
    return completed


def _modified(path: str) -> str:
    import datetime

    stamp = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
    return stamp.isoformat(timespec="seconds")


def _flags_text(run: RunSpec) -> str:
    return " ".join(f"--{k}={v}" for k, v in run.flags.items() if k != "method") or "-"


def group_results(runs: list[RunSpec], teacher: RunSpec | None, rows: list[dict]) -> list[tuple[RunSpec, list[dict]]]:
    """[(first spec of a line, finished rows of its seeds)] in config order, the teacher last. A seed
    that has no row of the current training code shows its newest row of other code (the tables mark
    it, and `compare` retrains it)."""
    groups: dict[str, tuple[RunSpec, list[dict]]] = {}
    for run in runs + ([teacher] if teacher else []):
        groups.setdefault(run.name, (run, []))
        row = finished_row(run, teacher, rows, any_code=True)
        if row is not None:
            groups[run.name][1].append(row)
    return list(groups.values())


def _train_accuracy(row: dict) -> float | None:
    """The last epoch's running training accuracy (augmented images, training mode), as `fit` reports it."""
    return row.get("final_train_metrics", {}).get("accuracy")


def _fit_accuracy(row: dict) -> float | None:
    """Accuracy on the unaugmented training images in inference mode after training (`training_set_accuracy`)."""
    return row.get("train_eval_accuracy")


def markdown_table(groups: list[tuple[RunSpec, list[dict]]]) -> str:
    eval_split = next((r[0]["eval_split"] for _, r in groups if r), "eval")
    header = [
        "run",
        "method",
        "model",
        "flags",
        "seeds",
        f"{eval_split} accuracy %",
        "train accuracy %",
        "running train accuracy %",
        f"{eval_split} NLL",
        "ECE %",
        "s/step",
        "x standard",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    standard = [
        r["seconds_per_step"]
        for run, results in groups
        if run.config.method == "standard" and run.name != TEACHER
        for r in results
        if r.get("seconds_per_step")
    ]
    for run, results in groups:
        if not results:
            cells = [run.name, run.config.method, run.config.model, _flags_text(run), "0", "not run"] + ["-"] * 6
        else:
            steps = [r["seconds_per_step"] for r in results if r.get("seconds_per_step")]
            eces = [r["eval_ece"] for r in results if r.get("eval_ece") is not None]  # runs since calibration
            train = [a for a in map(_train_accuracy, results) if a is not None]
            fit = [a for a in map(_fit_accuracy, results) if a is not None]
            cells = [
                run.name,
                run.config.method,
                run.config.model,
                f"`{_flags_text(run)}`",
                ", ".join(str(r["config"]["seed"]) + ("" if made_by_current_code(r) else "†") for r in results),
                records.mean_std([r["eval_accuracy"] for r in results], 100),
                records.mean_std(fit, 100) if fit else "-",
                records.mean_std(train, 100) if train else "-",
                records.mean_std([r["eval_loss"] for r in results], 1, 3),
                records.mean_std(eces, 100) if eces else "-",
                f"{statistics.median(steps):.3f}" if steps else "-",
                f"{statistics.median(steps) / statistics.median(standard):.2f}" if steps and standard else "-",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_chart(groups: list[tuple[RunSpec, list[dict]]], path: str, title: str) -> None:
    """Accuracy, NLL and seconds per step of every finished run line (not the teacher): mean ± std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [(run, results) for run, results in groups if results and run.name != TEACHER]
    if not done:
        return
    names = [run.name for run, _ in done]
    panels = [
        ("accuracy %", lambda r: 100 * r["eval_accuracy"]),
        ("NLL", lambda r: r["eval_loss"]),
        ("seconds per step (median of run)", lambda r: r["seconds_per_step"] or 0.0),
    ]
    figure, axes = plt.subplots(1, 3, figsize=(13, 0.45 * len(names) + 1.6), sharey=True)
    for axis, (label, value) in zip(axes, panels):
        values = [[value(r) for r in results] for _, results in done]
        means = [statistics.mean(v) for v in values]
        stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
        axis.barh(range(len(names)), means, xerr=stds, capsize=3, color="tab:blue")
        axis.set_xlabel(label)
        axis.grid(axis="x", alpha=0.3)
        if label.startswith("accuracy"):
            low = min(m - s for m, s in zip(means, stds))
            axis.set_xlim(max(0.0, low - 5), max(m + s for m, s in zip(means, stds)) + 2)
    axes[0].set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def provenance_summary(rows: list[dict]) -> str:
    """Which code, when and where: commits, training-code hashes, dates and machines of `rows`."""
    origins = [r.get("provenance", {}) for r in rows]
    commits = sorted(
        {(o.get("git_commit") or "unknown")[:10] + (" (modified)" if o.get("git_dirty") else "") for o in origins}
    )
    dates = sorted(o["date"][:10] for o in origins if o.get("date"))
    machines = sorted(
        {
            f"{o['machine']['cpu']}, {o['machine']['cpu_count']} cores"
            + (f" + {'/'.join(o['machine']['accelerators'])}" if o["machine"].get("accelerators") else ", no GPU")
            for o in origins
            if o.get("machine")
        }
    )
    when = (
        f"between {dates[0]} and {dates[-1]}"
        if dates and dates[0] != dates[-1]
        else (f"on {dates[0]}" if dates else "at unknown dates")
    )
    return (
        f"{when} from commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}, one at a time, on "
        f"{'; '.join(machines) or 'unrecorded machines'}"
    )


def report(groups, config_path: str, chart_path: str, report_path: str, data_path: str = "") -> str:
    """The Markdown report: how the numbers were made (budget, data, seeds, machine), table, chart."""
    finished = [r for _, results in groups for r in results]
    students = [r for run, results in groups if run.name != TEACHER for r in results]
    teacher = [r for run, results in groups if run.name == TEACHER for r in results]
    seeds = sorted({r["config"]["seed"] for r in students})
    command = f"python -m introspective_tf.compare --config={config_path}"

    def budget(r):
        c = r["config"]
        return (
            f"{r['model']}, {r['epochs']} epochs x {r['steps_per_epoch']} steps of batch {c['batch_size']} "
            f"on {r['num_train']} training images of `{r['dataset'].replace('folder:', '')}`, "
            f"lr {c['learning_rate']} ({c['schedule']}), weight decay {c['weight_decay']}"
        )

    lines = [
        f"# Method comparison ({os.path.splitext(os.path.basename(config_path))[0]})",
        "",
        f"Generated from the run data `{data_path}` by `{command}` (or `python -m introspective_tf.report`, which "
        "remakes every generated table); do not edit by hand.",
        "What each method does and what the KD variants isolate: [baselines.md](baselines.md).",
        "",
    ]
    if students:
        r = students[0]
        lines += [
            f"**Budget.** Students: {budget(r)}; seeds {', '.join(map(str, seeds))}. "
            f"Scored on the {r['eval_split']} split ({r['num_eval']} images"
            + (
                " held out of the training images, never trained on; no test split is used"
                if r["eval_split"] == "validation"
                else ""
            )
            + ")."
            + (f" Teacher for kd: {budget(teacher[0])}, seed {teacher[0]['config']['seed']}." if teacher else ""),
            f"Total training wall time: {sum(x['train_seconds'] for x in finished) / 60:.1f} min "
            f"over {len(finished)} runs "
            f"made {provenance_summary(finished)}.",
            "",
            "Accuracy, NLL and ECE (15 bins): mean ± std over seeds, on the held-out split. Train accuracy: on all the "
            "training images, unaugmented, in inference mode, after training; running train accuracy: the last "
            "epoch's running accuracy on augmented images, as `fit` reports it. s/step: median over "
            "seeds of each run's median training-step wall time (first step of each epoch excluded); x standard: "
            "that over the standard rows' median. Runs were made at different times and machines may have been "
            "busy, so read step times as rough ratios; `python -m introspective_tf.benchmark` measures them "
            "in one process. Each run's flags are the config's `common` line plus its own."
            + (
                " †: a seed made by training code other than the current (see `provenance.py`); running the "
                "config again retrains it."
                if not all(made_by_current_code(r) for r in finished)
                else ""
            ),
            "",
        ]
    lines += [
        markdown_table(groups),
        "",
        f"![accuracy, NLL and seconds per step]({os.path.relpath(chart_path, os.path.dirname(report_path) or '.')})",
        "",
    ]
    return "\n".join(lines)


@dataclasses.dataclass
class Study:
    """A comparison config read with its run data: what `compare` trains and reports."""

    config_path: str
    runs: list[RunSpec]
    teacher: RunSpec | None
    data_path: str
    report_path: str
    chart_path: str

    def groups(self) -> list[tuple[RunSpec, list[dict]]]:
        return group_results(self.runs, self.teacher, records.read(self.data_path))

    def report(self) -> str:
        return report(self.groups(), self.config_path, self.chart_path, self.report_path, self.data_path)


def load_study(
    config_path: str, runs_dir: str = "", report_path: str = "", chart_path: str = "", data_path: str = ""
) -> Study:
    try:
        with open(config_path) as f:
            text = f.read()
    except OSError as err:
        raise ConfigError(f"cannot read config '{config_path}': {err.strerror}") from None
    stem = os.path.splitext(os.path.basename(config_path))[0]
    runs_dir = runs_dir or os.path.join("runs", stem)
    report_path = report_path or read_report_path(text) or os.path.join(runs_dir, "results.md")
    chart_path = chart_path or os.path.splitext(report_path)[0] + ".png"
    data_path = data_path or read_setting(text, "data") or os.path.join(runs_dir, "runs.jsonl")
    runs, teacher = parse_config(text, runs_dir)
    return Study(config_path, runs, teacher, data_path, report_path, chart_path)


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
    study = load_study(config_path, runs_dir, report_path, chart_path, data_path)
    runs, teacher, data_path = study.runs, study.teacher, study.data_path
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
        if is_done(run, teacher, rows):
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
                except ConfigError as err:
                    failures.append(f"{run.name} seed {run.config.seed}: no teacher ({err})")
                    continue
                rows = records.read(data_path)
            print(f"[{number}/{len(order)}] {run.name} seed {run.config.seed}: training", flush=True)
            try:
                train(run, teacher, data_path)
                rows = records.read(data_path)
            except ConfigError as err:
                failures.append(f"{run.name} seed {run.config.seed}: {err}")
                print(f"error: {failures[-1]}", file=sys.stderr, flush=True)
        else:
            print(f"[{number}/{len(order)}] {run.name} seed {run.config.seed}: missing", flush=True)
    if complete_training_set_accuracy(rows, runs + ([teacher] if teacher else []), teacher, data_path):
        rows = records.read(data_path)
    groups = group_results(runs, teacher, rows)
    if not any(results for _, results in groups):
        raise ConfigError(f"no finished run of this config in {data_path}")
    for path in (study.report_path, study.chart_path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    stem = os.path.splitext(os.path.basename(config_path))[0]
    bar_chart(groups, study.chart_path, f"{stem}: mean ± std over seeds")
    with open(study.report_path, "w") as f:
        f.write(report(groups, config_path, study.chart_path, study.report_path, data_path))
    print(markdown_table(groups))
    print(f"wrote {study.report_path} and {study.chart_path}")
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
