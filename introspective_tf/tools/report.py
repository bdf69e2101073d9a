r"""Remakes every generated table in README.md and docs/ from the committed run data.

    python -m introspective_tf.tools.report            # rewrite what changed
    python -m introspective_tf.tools.report --check    # exit 1 if a file differs from what the data gives

Sources: each study config in `STUDIES` (its `data` file of finished runs, `results/*.jsonl`) gives
its report page (`docs/results.md`, `docs/sweep.md`: `study_page`, which `compare` writes too), and
`results/benchmark.jsonl` (`python -m introspective_tf.tools.benchmark --output=...`) the step-time
tables. In Markdown files a generated block sits between `<!-- generated: NAME -->` and
`<!-- end generated -->`; only the text between the markers is replaced, so prose around a table stays
the authors'. A test runs `--check`, so a table cannot drift from its data. Every table is made by
`tables.table`, every mean ± std cell by `tables.mean_std_cell`.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
from typing import Sequence

from introspective_tf.tools.study import (
    TEACHER,
    TIE_POINTS,
    Choice,
    RunSpec,
    Study,
    Target,
    load_study,
    made_by_current_code,
    read_declarations,
)
from introspective_tf.tools.tables import mean_std_cell, table
from introspective_tf.training import provenance, records

STUDIES = ("configs/sweep_cifar10.cfg", "configs/compare_cifar10.cfg", "configs/replicate_cifar10.cfg")
COMPARISON = "configs/compare_cifar10.cfg"
SWEEP = "configs/sweep_cifar10.cfg"
REPLICATION = "configs/replicate_cifar10.cfg"  # comparison runs made again on another machine
BENCHMARK_DATA = "results/benchmark.jsonl"
TARGET_CONTENT_DIR = "results/target_content"  # one JSON per analysed model (target_content.py --output)
TARGET_CONTENT_DETAIL = "compare_cifar10-introspective-seed0.json"  # the one whose per-class table the page shows
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


Groups = list[tuple[RunSpec, list[dict]]]  # a study's run lines, each with its finished rows (one per seed)
Studies = dict[str, tuple[Study, Groups]]  # config path -> the study and its groups


def _accuracy(row: dict) -> float:
    return 100 * row["eval_accuracy"]


def _running_accuracy(row: dict) -> float | None:
    """The last epoch's running training accuracy (augmented images, training mode), as `fit` reports it."""
    return (row.get("final_train_metrics") or {}).get("accuracy")


def _median_step(rows: list[dict]) -> float | None:
    """The median over `rows` of each run's median training-step time in seconds, if any recorded one."""
    steps = [r["seconds_per_step"] for r in rows if r.get("seconds_per_step")]
    return statistics.median(steps) if steps else None


def _split(groups: Groups, default: str = "held-out") -> str:
    """The split the rows were scored on (`holdout`, `validation`), for a column header."""
    return "/".join(sorted({r.get("eval_split", default) for _, rows in groups for r in rows})) or default


def _paired_differences(rows: list[dict], reference: list[dict]) -> list[float]:
    """Accuracy differences on the seeds both have, in seed order. A seed sets the random state the
    weights and the data order start from, so a reader sees whether a mean difference is one lucky seed
    or every seed."""
    theirs = {row["config"]["seed"]: _accuracy(row) for row in reference}
    ours = {row["config"]["seed"]: _accuracy(row) for row in rows}
    return [ours[s] - theirs[s] for s in sorted(ours) if s in theirs]


def _signed(differences: list[float]) -> str:
    return ", ".join(f"{d:+.2f}" for d in differences)


def _versus(rows: list[dict], reference: list[dict]) -> str:
    """`rows` minus `reference` in accuracy points: the mean of the paired differences, then seed by seed."""
    differences = _paired_differences(rows, reference) if reference is not rows else []
    return f"{statistics.mean(differences):+.2f} ({_signed(differences)})" if differences else "-"


def _flags_cell(run: RunSpec) -> str:
    """A run line's own flags (besides --method) as code, or "-"."""
    text = " ".join(f"--{k}={v}" for k, v in run.flags.items() if k != "method")
    return f"`{text}`" if text else "-"


def markdown_table(groups: Groups) -> str:
    """Every run line of a study, the teacher too: what it runs, then mean ± std over its seeds."""
    split = _split(groups, "eval")
    standard = _median_step(
        [r for run, rows in groups if run.config.method == "standard" for r in rows if run.name != TEACHER]
    )
    body = []
    for run, rows in groups:
        line = [run.name, run.config.method, run.config.model, _flags_cell(run)]
        if not rows:
            body.append([*line, "0", "not run"])
            continue
        step = _median_step(rows)
        body.append(
            [
                *line,
                ", ".join(str(r["config"]["seed"]) + ("" if made_by_current_code(r) else "†") for r in rows),
                mean_std_cell(rows, "eval_accuracy", 100),
                mean_std_cell(rows, "train_eval_accuracy", 100),
                mean_std_cell(rows, _running_accuracy, 100),
                mean_std_cell(rows, "eval_loss", digits=3),
                mean_std_cell(rows, "eval_ece", 100),
                f"{step:.3f}" if step else "-",
                f"{step / standard:.2f}" if step and standard else "-",
            ]
        )
    header = f"run | method | model | flags | seeds | {split} accuracy % | train accuracy % | running train accuracy %"
    return table(f"{header} | {split} NLL | ECE % | s/step | x standard", body, fill="-")


def bar_chart(study: Study, groups: Groups) -> None:
    """The chart beside a study's page: accuracy, NLL and seconds per step of every finished run line (not
    the teacher), mean ± std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [(run, rows) for run, rows in groups if rows and run.name != TEACHER]
    if not done:
        return
    names = [run.name for run, _ in done]
    panels = [
        ("accuracy %", _accuracy),
        ("NLL", lambda r: r["eval_loss"]),
        ("seconds per step (median of run)", lambda r: r["seconds_per_step"] or 0.0),
    ]
    figure, axes = plt.subplots(1, 3, figsize=(13, 0.45 * len(names) + 1.6), sharey=True)
    for axis, (label, value) in zip(axes, panels):
        values = [[value(r) for r in rows] for _, rows in done]
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
    figure.suptitle(f"{study.name}: mean ± std over seeds", fontsize=10)
    figure.tight_layout()
    figure.savefig(study.chart_path, dpi=110)
    plt.close(figure)


def _machine(machine: dict) -> str:
    accelerators = machine.get("accelerators")
    return f"{machine['cpu']}, {machine['cpu_count']} cores" + (
        f" + {'/'.join(accelerators)}" if accelerators else ", no GPU"
    )


def provenance_summary(rows: list[dict]) -> str:
    """Which code, when and where: the commits, dates and machines that made `rows`."""
    origins = [r.get("provenance", {}) for r in rows]
    commits = {(o.get("git_commit") or "unknown")[:10] + (" (modified)" if o.get("git_dirty") else "") for o in origins}
    dates = sorted(o["date"][:10] for o in origins if o.get("date"))
    machines = "; ".join(sorted({_machine(o["machine"]) for o in origins if o.get("machine")}))
    if not dates:
        when = "at unknown dates"
    elif dates[0] == dates[-1]:
        when = f"on {dates[0]}"
    else:
        when = f"between {dates[0]} and {dates[-1]}"
    plural = "s" if len(commits) > 1 else ""
    return f"{when} from commit{plural} {', '.join(sorted(commits))}, on {machines or 'unrecorded machines'}"


# The prose of a study page (study_page), around the numbers it fills in.
SPLIT_NOTES = {  # what the split a study is scored on is
    "validation": " held out of the training images, never trained on; no test split is used",
    "holdout": " held out of the training images, never trained on, and apart from the validation images the sweep "
    "chose settings on",
}
TABLE_NOTES = (
    "Accuracy, NLL and ECE (15 bins): mean ± std over seeds, on the held-out split. Train accuracy: on all the "
    "training images, unaugmented, in inference mode, after training; running train accuracy: the last epoch's "
    "running accuracy on augmented images, as `fit` reports it. s/step: median over seeds of each run's median "
    "training-step wall time (first step of each epoch excluded); x standard: that over the standard rows' median. "
    "Runs were made at different times and machines may have been busy, so read step times as rough ratios; "
    "`python -m introspective_tf.tools.benchmark` measures them in one process. Each run's flags are the config's "
    "`common` line plus its own."
)
OLDER_CODE_NOTE = (
    " †: a seed made by training code other than the current (see `provenance.py`); running the config again "
    "retrains it."
)
TARGET_MASS_NOTES = (
    "How far each introspective target was from the label while training: the mean mass q puts on the true class "
    "over the epoch's training batches (the `target_true_mass` metric; 1.000 is the label itself), mean over seeds, "
    "from each row's `epoch_history`. It is measured from the first epoch also where a warm-up ramps its weight in "
    "the loss or holds it at zero. Lowest: the lowest of these means over every epoch, and its epoch; second half: "
    "the last epoch's mean minus the middle epoch's, both shown (negative: the target moved mass off the true class "
    "in the second half of training)."
)


CHOICE_NOTES = (
    "The declared choices (the config's `choose` lines), applied to the rows above: among the lines each names, "
    "the highest mean accuracy over the seeds; a difference under {tie} points is a tie, broken by the lower "
    "mean NLL. A choice is final once every line it names has a row for every seed ({seeds}) made by the current "
    "training code; until then the table shows which line leads so far."
)


def choice_table(groups: Groups, choices: Sequence[Choice], seeds: Sequence[int]) -> str:
    """Each declared choice (`choose` lines) decided by its rule from the rows: per named line, its seeds,
    mean accuracy and NLL, and what the rule makes of it ("" when the study declares no choice)."""
    by_name = {run.name: rows for run, rows in groups}
    split, body = _split(groups), []
    for choice in choices:
        means = {
            name: (statistics.mean(map(_accuracy, rows)), statistics.mean(r["eval_loss"] for r in rows))
            for name in choice.lines
            if (rows := by_name.get(name))
        }
        final = all(
            sorted(r["config"]["seed"] for r in rows) == sorted(seeds) and all(map(made_by_current_code, rows))
            for rows in (by_name.get(name, []) for name in choice.lines)
        )
        best = max((accuracy for accuracy, _ in means.values()), default=None)
        # On the means as the table shows them (two decimals), so a reader can check the rule by eye.
        tied = [
            name for name, (accuracy, _) in means.items() if round(round(best, 2) - round(accuracy, 2), 6) < TIE_POINTS
        ]
        chosen = min(tied, key=lambda name: means[name][1]) if tied else None
        for name in choice.lines:
            rows = by_name.get(name, [])
            if name not in means:
                body.append([choice.name, name, "-", "not run", "-", "waiting for its seeds"])
                continue
            accuracy, nll = means[name]
            if name == chosen:
                decision = "**chosen**" if final else "leads so far"
                others = [other for other in tied if other != name]
                decision += f" (tie with {', '.join(others)}: lower NLL)" if others else ""
            elif name in tied:
                decision = f"tie with {chosen}: higher NLL"
            else:
                decision = f"{accuracy - means[chosen][0]:+.2f} points"
            body.append(
                [
                    choice.name,
                    name,
                    ", ".join(str(r["config"]["seed"]) + ("" if made_by_current_code(r) else "†") for r in rows),
                    mean_std_cell(rows, "eval_accuracy", 100),
                    mean_std_cell(rows, "eval_loss", digits=3),
                    decision,
                ]
            )
    return table(f"choice | run | seeds | {split} accuracy % | {split} NLL | by the rule", body) if body else ""


def _budget(row: dict) -> str:
    """How a run was trained: model, steps, batch, data and optimiser."""
    c = row["config"]
    return (
        f"{row['model']}, {row['epochs']} epochs x {row['steps_per_epoch']} steps of batch {c['batch_size']} on "
        f"{row['num_train']} training images of `{row['dataset'].replace('folder:', '')}`, lr {c['learning_rate']} "
        f"({c['schedule']}), weight decay {c['weight_decay']}"
    )


def study_page(study: Study, groups: Groups) -> str:
    """A study's Markdown page: how the numbers were made (budget, data, seeds, machine), table, chart."""
    finished = [r for _, rows in groups for r in rows]
    students = [r for run, rows in groups if run.name != TEACHER for r in rows]
    teacher = [r for run, rows in groups if run.name == TEACHER for r in rows]
    blocks = [
        f"# Method comparison ({study.name})",
        f"Generated from the run data `{study.data_path}` by `python -m introspective_tf.tools.compare "
        f"--config={study.config_path}` (or `python -m introspective_tf.tools.report`, which remakes every generated "
        "table); do not edit by hand.\n"
        "What each method does and what the KD variants isolate: [baselines.md](baselines.md).",
    ]
    if students:
        r, seeds = students[0], sorted({s["config"]["seed"] for s in students})
        teacher_budget = (
            f" Teacher for kd: {_budget(teacher[0])}, seed {teacher[0]['config']['seed']}." if teacher else ""
        )
        blocks.append(
            f"**Budget.** Students: {_budget(r)}; seeds {', '.join(map(str, seeds))}. Scored on the "
            f"{r['eval_split']} split ({r['num_eval']} images{SPLIT_NOTES.get(r['eval_split'], '')}).{teacher_budget}\n"
            f"Total training wall time: {sum(x['train_seconds'] for x in finished) / 60:.1f} min over "
            f"{len(finished)} runs made one at a time {provenance_summary(finished)}."
        )
        blocks.append(TABLE_NOTES + ("" if all(map(made_by_current_code, finished)) else OLDER_CODE_NOTE))
    with open(study.config_path) as f:
        declared = read_declarations(f.read())
    target_mass = target_mass_table(groups)
    choices = choice_table(groups, study.choices, study.seeds)
    blocks += [declared] if declared else []
    blocks += [markdown_table(groups)]
    notes = CHOICE_NOTES.format(tie=TIE_POINTS, seeds=", ".join(map(str, study.seeds)))
    blocks += [notes, choices] if choices else []
    blocks += [TARGET_MASS_NOTES, target_mass] if target_mass else []
    chart = os.path.relpath(study.chart_path, os.path.dirname(study.report_path) or ".")
    return "\n\n".join([*blocks, f"![accuracy, NLL and seconds per step]({chart})"]) + "\n"


def target_mass_table(groups: Groups, epochs: tuple[int, ...] = (1, 2, 5, 10, 20, 40)) -> str:
    """Per run line with a recorded `target_true_mass` history: its value at a few epochs and the last,
    the lowest over all epochs (with its epoch), and the change over the second half of training
    ("" when no row has one)."""
    header, body = [], []
    for run, rows in groups:
        histories = [
            r["epoch_history"]["target_true_mass"] for r in rows if "target_true_mass" in r.get("epoch_history", {})
        ]
        if not histories:
            continue
        last = min(map(len, histories))
        means = [statistics.mean(h[e] for h in histories) for e in range(last)]  # epoch e + 1
        shown = sorted({e for e in (*epochs, last // 2) if 0 < e < last}) + [last]
        lowest = min(range(last), key=lambda e: (round(means[e], 3), e))  # the first epoch at the shown lowest
        header = header or ["run", "seeds", *(f"epoch {e}" for e in shown), "lowest (epoch)", "second half"]
        body.append(
            [
                run.name,
                len(histories),
                *(f"{means[e - 1]:.3f}" for e in shown),
                f"{means[lowest]:.3f} ({lowest + 1})",
                f"{round(round(means[-1], 3) - round(means[last // 2 - 1], 3), 3) + 0.0:+.3f}" if last > 1 else "-",
            ]
        )
    return table(header, body) if body else ""


def comparison_table(groups: Groups) -> str:
    """A compact table of a study: one line per run line with finished seeds (step times: the benchmark)."""
    body = []
    for run, rows in groups:
        if run.name == TEACHER:
            continue
        older = sum(not made_by_current_code(r) for r in rows)
        body.append(
            [
                run.name,
                f"{len(rows)}" + (f" ({older}†)" if older else ""),
                mean_std_cell(rows, "eval_accuracy", 100),
                mean_std_cell(rows, "train_eval_accuracy", 100),
                mean_std_cell(rows, "eval_loss", digits=3),
                mean_std_cell(rows, "eval_ece", 100),
            ]
            if rows
            else [run.name, 0, "not run yet"]
        )
    return table(f"run | seeds | {_split(groups)} accuracy % | train accuracy % | NLL | ECE %", body)


def verdict(groups: Groups, judged: Sequence[str], targets: Sequence[Target]) -> str:
    """The targets the comparison config declares (`judge`, `target` lines), checked for each judged line
    against the comparison's numbers, as generated Markdown bullets."""
    by_name = {run.name: rows for run, rows in groups}
    accuracy = {name: statistics.mean(map(_accuracy, rows)) for name, rows in by_name.items() if rows}
    measured = [line for line in judged if line in accuracy]
    first = [r for r in targets[0].references if r in accuracy] if targets else []
    if not measured or not first:
        references = ", ".join(targets[0].references) if targets else "its references"
        return (
            f"- Not measured yet: the comparison has no finished {' or '.join(judged)} runs, or none of {references}."
        )
    compared = [*measured, *(r for t in targets for r in t.references if r in accuracy)]
    seeds = {name: len(by_name[name]) for name in compared}  # in order of first mention
    every_reference = all(r in accuracy for t in targets for r in t.references)
    # A judged line's verdict is final once it and every reference have their 3 seeds, whatever other
    # judged lines still wait for theirs.
    references_done = every_reference and all(seeds[r] >= 3 for t in targets for r in t.references)
    waiting = [line for line in judged if len(by_name.get(line, ())) < 3]
    lines = []
    for line in measured:
        complete = references_done and seeds[line] >= 3
        met, checks = [], []
        for target in targets:
            references = [r for r in target.references if r in accuracy]
            if not references:
                continue
            best = max(references, key=accuracy.get)
            difference = accuracy[line] - accuracy[best]
            met.append(difference >= target.margin)
            who = f"{target.description}, {best}" if target.description else best
            wanted = "0" if target.margin == 0 else f"{target.margin:+.2f}"
            per_seed = _signed(_paired_differences(by_name[line], by_name[best])) or "no common seed"
            checks.append(
                f"- {line} {accuracy[line]:.2f} % vs {who} {accuracy[best]:.2f} %: {difference:+.2f} points "
                f"(per seed: {per_seed}; target: {wanted} or more) - {'met' if met[-1] else 'not met'}."
            )
        if complete:
            summary = f"{line}: {sum(met)} of the {len(targets)} targets met" + (
                "" if all(met) else ", it falls short here"
            )
        else:
            summary = f"{line}: so far {sum(met)} of the {len(met)} targets measured (of {len(targets)}) met; interim"
        lines += [f"- **{summary}.**", *checks]
    lines += [f"- **{line}: not measured yet** (no finished seed)." for line in judged if line not in accuracy]
    counts = ", ".join(f"{name} {n}" for name, n in seeds.items())
    if references_done and not waiting:
        lines.append(f"- Means over the seeds of every line the targets compare (seeds per line: {counts}): final.")
    elif references_done:
        lines.append(
            f"- Means over the seeds finished so far (seeds per line: {counts}): final for every judged line with "
            f"3 seeds; {', '.join(waiting)} still "
            f"{'waits' if len(waiting) == 1 else 'wait'} for {'its' if len(waiting) == 1 else 'their'} seeds (interim)."
        )
    else:
        lines.append(
            f"- Means over the seeds finished so far (seeds per line: {counts}); the comparison is not complete yet "
            "(3 seeds of every line the targets name), so these are interim numbers."
        )
    return "\n".join(lines)


SOFT_TARGET_PARTS = (
    ("kd", "the teacher's soft target"),
    ("kd_uniform_non_gt", "its true-class response, the rest spread evenly: no class similarity"),
    ("kd_shuffled_non_gt", "its true-class response and wrong-class values, shuffled among the wrong classes"),
    ("kd_constant_true_mass", "the teacher's mean true-class mass for every example, the rest spread evenly"),
    ("introspective", "the self-explanation target (no teacher)"),
    ("introspective_gradcam_m0.9", "the same, 0.9 of its mass on the true class (no teacher)"),
    ("introspective_input_gradient", "the same from input gradients, the paper's own explanation (no teacher)"),
)

# The teacher-free targets built from the model's own outputs, and the lines each is set against
# (docs/findings.md says what each pair asks), in column order.
SELF_TARGET_REFERENCES = (
    ("standard", "standard"),
    ("pskd", "PS-KD"),
    ("online_label_smoothing", "OLS"),
    ("kd", "KD"),
)
SELF_TARGET_METHODS = ("pskd", "online_label_smoothing", "pskd_explained")


def soft_target_parts_table(groups: Groups) -> str:
    """The paper's claim (i), measured: which part of a teacher's soft target helps. Each KD variant
    against standard training, full KD and the teacher's true-class response alone (uniform non-GT: what
    the constant-true-mass control takes the per-example variation from), seed by seed, with
    introspection beside them."""
    by_name = {run.name: rows for run, rows in groups}
    references = [by_name.get(name, []) for name in ("standard", "kd", "kd_uniform_non_gt")]
    body = []
    for name, what in SOFT_TARGET_PARTS:
        rows = by_name.get(name, [])
        versus = [_versus(rows, reference) for reference in references]
        body.append([name, what, len(rows), *([mean_std_cell(rows, _accuracy), *versus] if rows else ["not run yet"])])
    header = "run | what the student learns from | seeds | holdout accuracy % | vs standard (per seed)"
    return table(f"{header} | vs full KD (per seed) | vs uniform non-GT (per seed)", body)


def self_target_table(groups: Groups) -> str:
    """Targets made from the model's own outputs: PS-KD (its previous prediction), Online Label Smoothing
    (its class-mean prediction) and pskd_explained (PS-KD's true-class mass, the wrong classes by
    explanation similarity), each against the references of SELF_TARGET_REFERENCES, seed by seed."""
    by_name = {run.name: rows for run, rows in groups}
    body = []
    for run, rows in groups:
        if run.config.method not in SELF_TARGET_METHODS:
            continue
        if not rows:
            body.append([run.name, run.config.method, 0, "not run yet"])
            continue
        versus = [
            _versus(rows, by_name.get(name, [])) if name != run.name else "-" for name, _ in SELF_TARGET_REFERENCES
        ]
        body.append([run.name, run.config.method, len(rows), mean_std_cell(rows, _accuracy), *versus])
    if not body:
        return "Not measured yet."
    header = ["run", "method", "seeds", f"{_split(groups)} accuracy %"]
    return table([*header, *(f"vs {what} (per seed)" for _, what in SELF_TARGET_REFERENCES)], body)


def _row_key(row: dict) -> tuple:
    """What tells one run's row from another's in a data file: its line, seed and when it was made."""
    return row.get("compare_run"), row["config"]["seed"], row["provenance"]["date"]


def replication_table(replicated: Groups, comparison: Study, comparison_groups: Groups) -> str:
    """Every row of a (run, seed) that the replication study made again, from the comparison's data and its
    own, oldest first: which machine and code made each, what it scored, and whether the comparison counts it."""
    counted = {_row_key(row) for _, rows in comparison_groups for row in rows}
    made = records.read(comparison.data_path)
    body = []
    for run, rows in replicated:
        for seed in sorted({row["config"]["seed"] for row in rows}):
            same = [
                (row, "yes" if _row_key(row) in counted else "no (earlier code)")
                for row in made
                if row.get("compare_run") == run.name
                and row["config"]["seed"] == seed
                and row["config"].get("eval_split") == run.config.eval_split
            ]
            same += [(row, "no (the replication)") for row in rows if row["config"]["seed"] == seed]
            counted_row = next((row for row, used in same if used == "yes"), None)
            for row, used in sorted(same, key=lambda pair: pair[0]["provenance"]["date"]):
                origin = row["provenance"]
                body.append(
                    [
                        run.name,
                        seed,
                        origin["date"][:10],
                        _machine(origin["machine"]),
                        origin["code_hash"],
                        f"{_accuracy(row):.2f}",
                        "-"
                        if counted_row is None or used == "yes"
                        else f"{_accuracy(row) - _accuracy(counted_row):+.2f}",
                        "-" if row.get("train_eval_accuracy") is None else f"{100 * row['train_eval_accuracy']:.2f}",
                        f"{row['eval_loss']:.3f}",
                        f"{100 * row['eval_ece']:.2f}",
                        used,
                    ]
                )
    if not body:
        return f"Not run yet: `python -m introspective_tf.tools.compare --config={REPLICATION}`."
    header = ["run", "seed", "made", "machine", "training code", f"{_split(replicated)} accuracy %"]
    return table([*header, "vs the counted row", "train accuracy %", "NLL", "ECE %", "counted by the comparison"], body)


def teacher_free_table(groups: Groups) -> str:
    """Every line of a comparison that learns without a trained teacher (all but standard training, the
    teacher and the kd lines): its accuracy against standard training and the introspective line's
    against it, seed by seed; then which of them are above standard training on every seed and which
    varies most over seeds."""
    by_name = {run.name: rows for run, rows in groups}
    standard, introspective = by_name.get("standard", []), by_name.get("introspective", [])
    body, above, spreads = [], [], {}
    for run, rows in groups:
        if run.name in (TEACHER, "standard") or run.config.method == "kd":
            continue
        if not rows:
            body.append([run.name, 0, "not run yet"])
            continue
        if min(_paired_differences(rows, standard), default=0) > 0:
            above.append(run.name)
        if len(rows) > 1:
            spreads[run.name] = statistics.stdev([_accuracy(r) for r in rows])
        body.append(
            [run.name, len(rows), mean_std_cell(rows, _accuracy), _versus(rows, standard), _versus(introspective, rows)]
        )
    if not body:
        return "Not measured yet."
    widest = max(spreads, key=spreads.get, default=None)
    header = f"run | seeds | {_split(groups)} accuracy % | vs standard (per seed) | introspective vs it (per seed)"
    return (
        table(header, body)
        + f"\n\nAbove standard training on every seed: {', '.join(above) or 'none of these lines'}."
        + (f" Widest spread over seeds: {widest} (± {spreads[widest]:.2f})." if widest else "")
    )


def regime_table(studies: dict[str, Groups], earlier_teachers: dict[str, list[dict]] | None = None) -> str:
    """Does standard training fit its data? Training vs validation accuracy of the reference lines of
    each study (per seed), from their run data; then the teachers a study trained under an earlier
    configuration (`earlier_teachers`: rows that no longer count), so why one was replaced stays data."""

    def line(study: str, label: str, row: dict) -> list:
        fit = row.get("train_eval_accuracy")
        fit, gap = (f"{100 * fit:.2f}", f"{100 * fit - _accuracy(row):.2f}") if fit is not None else ("-", "-")
        running, held_out = f"{100 * _running_accuracy(row):.2f}", f"{_accuracy(row):.2f}"
        return [study, f"{label} ({row['model']})", row["config"]["seed"], fit, running, held_out, gap]

    body, standard = [], []  # standard: its rows that measured training accuracy
    for config, groups in studies.items():
        study = os.path.basename(config)
        for run, rows in groups:
            if run.name in ("standard", "label_smoothing", TEACHER):
                body += [line(study, run.name, row) for row in sorted(rows, key=lambda r: r["config"]["seed"])]
            if run.name == "standard":
                standard += [row for row in rows if row.get("train_eval_accuracy") is not None]
        body += [line(study, "earlier teacher", row) for row in (earlier_teachers or {}).get(config, [])]
    if not body:
        return "Not measured yet."
    header = "study | run | seed | train accuracy % | running train accuracy % | held-out accuracy % | gap (points)"
    if not standard:
        return table(header, body)
    fits = [100 * r["train_eval_accuracy"] for r in standard]
    gaps = [fit - _accuracy(r) for fit, r in zip(fits, standard)]
    return table(header, body) + (
        f"\n\nStandard training over {len(fits)} runs: training accuracy {min(fits):.2f}-{max(fits):.2f} % "
        f"(98 % or more in {sum(f >= 98.0 for f in fits)} of {len(fits)}), {statistics.mean(gaps):.1f} points "
        "above held-out accuracy on average."
    )


def benchmark_table(rows: list[dict]) -> str:
    """Step-time ratios to standard per (model, choice, class count), from benchmark rows."""
    if not rows:
        return "Not measured yet: run `python -m introspective_tf.tools.benchmark --output=results/benchmark.jsonl`."
    counts = sorted({r["num_classes"] for r in rows})
    latest = {(r["model"], r["method"], r["num_classes"]): r for r in rows}  # the last measurement of each
    choices = list(dict.fromkeys((r["model"], r["method"]) for r in rows))
    choices.sort(key=lambda choice: choice[1] != rows[0]["baseline"])  # the baseline first, the rest as measured
    body = [
        [model, f"`{choice}`", *(_step_ratio(latest.get((model, choice, c))) for c in counts)]
        for model, choice in choices
    ]
    note = (
        f"Ratio to `standard` in the same process (median step time in brackets); measured {provenance_summary(rows)}."
    )
    return table(["model", "choice", *(f"C = {c}" for c in counts)], body) + f"\n\n{note}"


def _step_ratio(row: dict | None) -> str:
    return f"{row['ratio']:.2f} ({row['median_seconds']:.3f} s)" if row else "-"


def earlier_teacher_rows(study: Study, groups: Groups) -> list[dict]:
    """Teacher rows of a study's data that its current teacher line (in `groups`) no longer matches."""
    counted = [row for run, rows in groups if run.name == TEACHER for row in rows]
    return [r for r in records.read(study.data_path) if r.get("compare_run") == TEACHER and r not in counted]


def load_studies() -> Studies:
    """Every study config, loaded once with its finished runs (its data file read once)."""
    loaded = {config: load_study(config) for config in STUDIES}
    return {config: (study, study.groups()) for config, study in loaded.items()}


def blocks(studies: Studies) -> dict[str, str]:
    """Every named generated block's Markdown."""
    comparison, groups = studies[COMPARISON]
    return {
        "comparison": comparison_table(groups),
        "sweep": comparison_table(studies[SWEEP][1]),
        "verdict": verdict(groups, comparison.judged, comparison.targets),
        "soft-target-parts": soft_target_parts_table(groups),
        "teacher-free": teacher_free_table(groups),
        "self-targets": self_target_table(groups),
        "replication": replication_table(studies[REPLICATION][1], comparison, groups),
        "regime": regime_table(
            {c: g for c, (_, g) in studies.items()}, {c: earlier_teacher_rows(s, g) for c, (s, g) in studies.items()}
        ),
        "benchmark": benchmark_table(records.read(BENCHMARK_DATA)),
        "target-content": target_content_table(TARGET_CONTENT_DIR, TARGET_CONTENT_DETAIL),
    }


def target_content_table(folder: str, detail: str) -> str:
    """The target-content block: every analysed model's result in `folder` (target_content.py's JSON
    files), the per-class table of the one named `detail`."""
    names = sorted(f for f in os.listdir(folder) if f.endswith(".json")) if os.path.isdir(folder) else []
    if not names:
        return f"Not measured yet: the command above writes `{folder}/NAME.json`."
    from introspective_tf.tools import target_content  # imports TensorFlow: only once there is a result

    results = {}
    for name in names:
        with open(os.path.join(folder, name)) as f:
            results[name] = json.load(f)
    shown = results.get(detail) or results[names[0]]
    measured = provenance_summary(list(results.values()))
    return target_content.models_summary(list(results.values()), shown, measured)


def _fill(text: str, generated: dict[str, str], path: str) -> str:
    def replace(match):
        name = match.group("name")
        if name not in generated:
            raise SystemExit(f"error: {path} has a generated block '{name}' that report.py does not make")
        return f"{match.group(1)}{generated[name]}\n{match.group(4)}"

    return BLOCK.sub(replace, text)


def _read(path: str) -> str | None:
    """A file's text, or None if there is no such file."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def outputs(studies: Studies) -> dict[str, str]:
    """{path: its generated text} for every study page and every Markdown file with generated blocks."""
    result = {study.report_path: study_page(study, groups) for study, groups in studies.values()}
    generated = blocks(studies)
    for path in ["README.md", *(os.path.join("docs", f) for f in sorted(os.listdir("docs")) if f.endswith(".md"))]:
        text = result.get(path) or _read(path)
        if BLOCK.search(text):
            result[path] = _fill(text, generated, path)
    return result


def stale() -> list[str]:
    """The files whose text differs from what the committed data gives."""
    return [path for path, text in outputs(load_studies()).items() if _read(path) != text]


def main(argv: list[str]) -> None:
    os.chdir(provenance.REPOSITORY_DIR)
    if "--check" in argv[1:]:
        if different := stale():
            sys.exit(
                f"error: generated text differs from the run data in {', '.join(different)}: "
                "run python -m introspective_tf.tools.report"
            )
        print("every generated table matches the run data")
        return
    studies = load_studies()
    for path, text in outputs(studies).items():
        with open(path, "w") as f:
            f.write(text)
        print(f"wrote {path}")
    for study, groups in studies.values():
        bar_chart(study, groups)


if __name__ == "__main__":
    main(sys.argv)
