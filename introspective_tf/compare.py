r"""Runs every method of a comparison over several seeds, then writes a Markdown report and a bar chart.

    python -m introspective_tf.compare --config=configs/compare_cifar10.cfg

The config lists one run per line, `NAME --flag=value ...` with train.py's flag names:

    common  --dataset=folder:../shared/data/cifar10 --model=small_cnn --epochs=10   # every run
    seeds   0 1                                                                     # each run line, per seed
    report  docs/results.md                          # where to write the report (chart: same name, .png)
    teacher --model=resnet32 --method=standard       # trained once; kd runs without --teacher use it
    standard --method=standard
    kd_full --method=kd --kd_target=full --alpha=0.9 --temperature=4

A run whose results.json already holds the same configuration (after the method's defaults are
filled in) is reused, not retrained: after changing one line or one method's defaults, re-running
retrains only what changed. `--notrain` only collects the finished runs.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shlex
import shutil
import statistics
import sys
from typing import Any

from introspective_tf import experiment, methods
from introspective_tf.errors import ConfigError

# Fields that change where a run writes or how much it prints, not what it learns.
_NOT_COMPARED = ("output_dir", "export_dir", "verbose")
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


def method_hparams(method: str, given: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """Every hyper-parameter `method` takes: its constructor defaults, overridden by `given`."""
    if method not in methods.METHODS:
        raise ConfigError(f"{where}: unknown method '{method}': use one of {', '.join(methods.METHODS)}")
    defaults = methods.default_hparams(method)
    resolved = dict(defaults)
    for key, value in given.items():
        if key in defaults:
            default = defaults[key]
            resolved[key] = _cast(value, type(default), key, where) if isinstance(value, str) else value
    return resolved


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
    resolved = method_hparams(config.method, hparams, where)
    unknown = sorted(set(hparams) - set(resolved))
    if unknown:
        raise ConfigError(f"{where}: method '{config.method}' takes no flag --{unknown[0]}")
    config.hparams = resolved
    return config


def read_report_path(text: str) -> str:
    """The config's `report PATH` line, or ""."""
    for line in text.splitlines():
        tokens = shlex.split(line, comments=True)
        if len(tokens) == 2 and tokens[0] == "report":
            return tokens[1]
    return ""


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
        if name in ("common", "seeds", "report"):
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
    config["hparams"] = method_hparams(config["method"], config.get("hparams", {}))
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def _read_results(output_dir: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(output_dir, "results.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _wanted(run: RunSpec, teacher: RunSpec | None) -> dict[str, Any]:
    wanted = {"config": comparable(dataclasses.asdict(run.config))}
    if run.uses_teacher:
        wanted["teacher"] = comparable(dataclasses.asdict(teacher.config))
    return wanted


def is_done(run: RunSpec, teacher: RunSpec | None) -> bool:
    """results.json exists and was made by the same configuration (and, for kd, the same teacher)."""
    results = _read_results(run.config.output_dir)
    if results is None or "config" not in results:
        return False
    try:
        found = {"config": comparable(results["config"])}
    except ConfigError:  # a method that no longer exists
        return False
    if run.uses_teacher:
        found["teacher"] = results.get("teacher")
        if isinstance(found["teacher"], dict):
            found["teacher"] = {k: v for k, v in _with_new_fields(found["teacher"]).items() if k not in _NOT_COMPARED}
    return found == _wanted(run, teacher)


def train(run: RunSpec, teacher: RunSpec | None) -> dict[str, Any]:
    """Trains `run` in this process. A stale run folder this tool made (another configuration) is
    cleared first; a crashed run of the same configuration resumes from its backup. A folder this
    tool did not make is never touched."""
    import keras

    wanted = _wanted(run, teacher)
    marker = os.path.join(run.config.output_dir, "compare_config.json")
    try:
        with open(marker) as f:
            same = json.load(f) == wanted
    except FileNotFoundError:
        if os.path.isdir(run.config.output_dir) and os.listdir(run.config.output_dir):
            raise ConfigError(f"{run.config.output_dir} holds a run of another configuration that this tool did not "
                              "make: move it away or use another --runs_dir") from None
        same = False
    except (OSError, ValueError):
        same = False
    if not same and os.path.isdir(run.config.output_dir):
        shutil.rmtree(run.config.output_dir)
    os.makedirs(run.config.output_dir, exist_ok=True)
    experiment.write_json(marker, wanted)
    keras.backend.clear_session()
    extra = {"compare_run": run.name, **({"teacher": wanted["teacher"]} if run.uses_teacher else {})}
    return experiment.run(dataclasses.replace(run.config, hparams=dict(run.config.hparams)), extra_results=extra)


def _mean_std(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    mean = statistics.mean(values) * scale
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def _flags_text(run: RunSpec) -> str:
    return " ".join(f"--{k}={v}" for k, v in run.flags.items() if k != "method") or "-"


def group_results(runs: list[RunSpec], teacher: RunSpec | None) -> list[tuple[RunSpec, list[dict]]]:
    """[(first spec of a line, finished results of its seeds)] in config order, the teacher last."""
    groups: dict[str, tuple[RunSpec, list[dict]]] = {}
    for run in runs + ([teacher] if teacher else []):
        groups.setdefault(run.name, (run, []))
        if is_done(run, teacher):
            groups[run.name][1].append(_read_results(run.config.output_dir))
    return list(groups.values())


def markdown_table(groups: list[tuple[RunSpec, list[dict]]]) -> str:
    eval_split = next((r[0]["eval_split"] for _, r in groups if r), "eval")
    header = ["run", "method", "model", "flags", "seeds", f"{eval_split} accuracy %", f"{eval_split} NLL", "ECE %", "s/step"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run, results in groups:
        if not results:
            cells = [run.name, run.config.method, run.config.model, _flags_text(run), "0", "not run", "-", "-", "-"]
        else:
            steps = [r["seconds_per_step"] for r in results if r.get("seconds_per_step")]
            eces = [r["eval_ece"] for r in results if r.get("eval_ece") is not None]  # runs since calibration
            cells = [run.name, run.config.method, run.config.model, f"`{_flags_text(run)}`",
                     ", ".join(str(r["config"]["seed"]) for r in results),
                     _mean_std([r["eval_accuracy"] for r in results], 100),
                     _mean_std([r["eval_loss"] for r in results], 1, 3),
                     _mean_std(eces, 100) if eces else "-",
                     f"{statistics.median(steps):.3f}" if steps else "-"]
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
    panels = [("accuracy %", lambda r: 100 * r["eval_accuracy"]), ("NLL", lambda r: r["eval_loss"]),
              ("seconds per step (median of run)", lambda r: r["seconds_per_step"] or 0.0)]
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


def report(groups, config_path: str, chart_path: str, report_path: str) -> str:
    """The Markdown report: how the numbers were made (budget, data, seeds, machine), table, chart."""
    finished = [r for _, results in groups for r in results]
    students = [r for run, results in groups if run.name != TEACHER for r in results]
    teacher = [r for run, results in groups if run.name == TEACHER for r in results]
    seeds = sorted({r["config"]["seed"] for r in students})
    command = f"python -m introspective_tf.compare --config={config_path}"

    def budget(r):
        c = r["config"]
        return (f"{r['model']}, {r['epochs']} epochs x {r['steps_per_epoch']} steps of batch {c['batch_size']} "
                f"on {r['num_train']} training images of `{r['dataset'].replace('folder:', '')}`, "
                f"lr {c['learning_rate']} ({c['schedule']}), weight decay {c['weight_decay']}")

    lines = [
        f"# Method comparison ({os.path.splitext(os.path.basename(config_path))[0]})",
        "",
        f"Generated by `{command}` (runs whose configuration had not changed were reused) on {datetime.date.today().isoformat()}; do not edit by hand.",
        "What each method does and what the KD variants isolate: [baselines.md](baselines.md).",
        "",
    ]
    if students:
        r = students[0]
        lines += [
            f"**Budget.** Students: {budget(r)}; seeds {', '.join(map(str, seeds))}. "
            f"Scored on the {r['eval_split']} split ({r['num_eval']} images"
            + (" held out of the training images, never trained on; no test split is used" if r["eval_split"] == "validation" else "")
            + ")." + (f" Teacher for kd: {budget(teacher[0])}, seed {teacher[0]['config']['seed']}." if teacher else ""),
            f"Total training wall time: {sum(x['train_seconds'] for x in finished) / 60:.1f} min "
            f"over {len(finished)} runs, one at a time, on a {os.cpu_count()}-core CPU without GPU shared with other jobs.",
            "",
            "Accuracy, NLL and ECE (15 bins): mean ± std over seeds. s/step: median over seeds of each run's median training-step "
            "wall time (first step of each epoch excluded); the machine was shared, so compare ratios, not "
            "absolute times. Each run's flags are the config's `common` line plus its own.",
            "",
        ]
    lines += [markdown_table(groups), "", f"![accuracy, NLL and seconds per step]({os.path.relpath(chart_path, os.path.dirname(report_path) or '.')})", ""]
    return "\n".join(lines)


def compare(config_path: str, runs_dir: str = "", report_path: str = "", chart_path: str = "",
            train_missing: bool = True) -> list[tuple[RunSpec, list[dict]]]:
    """Trains what is missing (the teacher first), then writes the report and the chart."""
    try:
        with open(config_path) as f:
            text = f.read()
    except OSError as err:
        raise ConfigError(f"cannot read config '{config_path}': {err.strerror}") from None
    stem = os.path.splitext(os.path.basename(config_path))[0]
    runs_dir = runs_dir or os.path.join("runs", stem)
    report_path = report_path or read_report_path(text) or os.path.join(runs_dir, "results.md")
    chart_path = chart_path or os.path.splitext(report_path)[0] + ".png"
    runs, teacher = parse_config(text, runs_dir)
    seeds_order = list(dict.fromkeys(r.config.seed for r in runs))
    # Seed by seed: if time runs out, every method has its first seeds.
    order = ([teacher] if teacher and any(r.uses_teacher for r in runs) else []) + sorted(runs, key=lambda r: seeds_order.index(r.config.seed))
    failures = []
    for number, run in enumerate(order, 1):
        if is_done(run, teacher):
            print(f"[{number}/{len(order)}] {run.name} seed {run.config.seed}: reusing {run.config.output_dir}", flush=True)
        elif train_missing:
            if run.uses_teacher and not is_done(teacher, teacher):
                failures.append(f"{run.name} seed {run.config.seed}: no teacher")
                continue
            print(f"[{number}/{len(order)}] {run.name} seed {run.config.seed}: training", flush=True)
            try:
                train(run, teacher)
            except ConfigError as err:
                failures.append(f"{run.name} seed {run.config.seed}: {err}")
                print(f"error: {failures[-1]}", file=sys.stderr, flush=True)
        else:
            print(f"[{number}/{len(order)}] {run.name} seed {run.config.seed}: missing", flush=True)
    groups = group_results(runs, teacher)
    if not any(results for _, results in groups):
        raise ConfigError(f"no finished run under {runs_dir}")
    for path in (report_path, chart_path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    bar_chart(groups, chart_path, f"{stem}: mean ± std over seeds")
    with open(report_path, "w") as f:
        f.write(report(groups, config_path, chart_path, report_path))
    print(markdown_table(groups))
    print(f"wrote {report_path} and {chart_path}")
    if failures:
        raise ConfigError(f"{len(failures)} run(s) failed: {'; '.join(failures)}")
    return groups


def main(argv):
    from absl import flags

    del argv
    FLAGS = flags.FLAGS
    try:
        compare(FLAGS.config, FLAGS.runs_dir, FLAGS.report, FLAGS.chart, FLAGS.train)
    except ConfigError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import app, flags

    flags.DEFINE_string("config", None, "Comparison config: one run per line (see this module's docstring).", required=True)
    flags.DEFINE_string("runs_dir", "", "Folder of the runs; default runs/<config name>.")
    flags.DEFINE_string("report", "", "Markdown report to write; default <runs_dir>/results.md.")
    flags.DEFINE_string("chart", "", "PNG bar chart to write; default the report's path with .png.")
    flags.DEFINE_bool("train", True, "Train missing runs; --notrain only collects finished ones.")
    app.run(main)
