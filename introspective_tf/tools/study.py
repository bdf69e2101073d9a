r"""A study: a comparison config (run lines x seeds) read together with its finished runs.

The config lists one run per line, `NAME --flag=value ...` with train.py's flags (parsed by absl with
the same definitions, `training/run_flags.py`):

    common  --dataset=folder:../shared/data/cifar10 --model=small_cnn --epochs=10   # every run
    seeds   0 1                                                                     # each run line, per seed
    report  docs/results.md                          # where to write the report (chart: same name, .png)
    #> A line of Markdown the report shows above its table (a sweep's declared grid and choosing rule).
    data    results/compare_cifar10.jsonl            # finished runs, one JSON row each (committed)
    judge   introspective                            # the lines the targets judge (README's verdict)
    target  standard 1.0                             # judged - reference >= 1.0 points ...
    target  best_of:label_smoothing,pskd 0 the best teacher-free regulariser   # ... or the best of several
    choose  gradcam tau_0.01 tau_0.02                # a declared choice: the rule applied to these lines
    teacher --model=resnet32 --method=standard       # trained once; kd runs without --teacher use it
    standard --method=standard
    kd_full --method=kd --kd_target=full --alpha=0.9 --temperature=4

Every finished run is a row of the `data` file (its results.json without the loss history, with the
code version, date and machine: `provenance.py`). A row counts for a run line when it holds the same
configuration (after the method's defaults are filled in) *and* was made by the same training code
(`code_hash`, or a hash `tools/equivalence.py` showed to train bit-identically). `compare` trains
what has no row; `report` writes tables from the rows alone.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import shlex
from typing import Any

from introspective_tf import methods
from introspective_tf.errors import ConfigError
from introspective_tf.training import experiment, provenance, records, run_flags

# Pairs {code_hash: new, same_as: old} of training code shown to train identically (tools/equivalence.py).
EQUIVALENCE_PATH = os.path.join(provenance.REPOSITORY_DIR, "results", "code_equivalence.jsonl")

# Fields that change where a run writes or how much it prints, validates or draws, not what it learns.
NOT_COMPARED = (
    "output_dir",
    "export_dir",
    "verbose",
    "validation_freq",
    "validation_steps",
    "data_cache_dir",
    "explanation_images_every",
)
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


def _make_config(flags: dict[str, str], where: str) -> experiment.ExperimentConfig:
    """The run these flags describe, parsed by absl exactly as train.py parses them."""
    config = run_flags.parse_run_line([f"--{key}={value}" for key, value in flags.items()], where)
    config.hparams = methods.resolve(config.method, config.hparams, where)
    return config


SETTINGS = ("common", "seeds", "report", "data", "judge", "target", "choose")


@dataclasses.dataclass(frozen=True)
class Target:
    """`target REFERENCE MARGIN [DESCRIPTION]`: each judged line's accuracy minus the reference line's (or,
    for `best_of:A,B,...`, the best of those measured) must be at least MARGIN points."""

    references: tuple[str, ...]
    margin: float
    description: str = ""


def read_verdict(text: str) -> tuple[list[str], list[Target]]:
    """The config's `judge LINE ...` (the lines the targets judge) and its `target` lines, as data."""
    judged, targets = [], []
    for number, line in enumerate(text.splitlines(), 1):
        tokens = shlex.split(line, comments=True)
        if tokens[:1] == ["judge"]:
            judged += tokens[1:]
        elif tokens[:1] == ["target"]:
            if len(tokens) < 3:
                raise ConfigError(f"line {number}: expected target REFERENCE MARGIN [DESCRIPTION]")
            reference = tokens[1].removeprefix("best_of:")
            try:
                margin = float(tokens[2])
            except ValueError:
                raise ConfigError(
                    f"line {number}: a target's margin is a number of points, not '{tokens[2]}'"
                ) from None
            targets.append(Target(tuple(reference.split(",")), margin, " ".join(tokens[3:])))
    return judged, targets


@dataclasses.dataclass(frozen=True)
class Choice:
    """`choose NAME LINE LINE ...`: a sweep's declared choice among these run lines. The rule (report.py,
    `choice_table`): the highest mean accuracy over the config's seeds; a difference under `TIE_POINTS`
    is a tie, broken by the lower mean NLL. Declared before the runs, applied to whatever rows exist."""

    name: str
    lines: tuple[str, ...]


TIE_POINTS = 0.1


def read_choices(text: str) -> list[Choice]:
    """The config's `choose` lines, each naming at least two of the config's run lines."""
    parsed = [shlex.split(line, comments=True) for line in text.splitlines()]
    run_lines = {tokens[0] for tokens in parsed if tokens and tokens[0] not in SETTINGS}
    choices = []
    for number, tokens in enumerate(parsed, 1):
        if tokens[:1] != ["choose"]:
            continue
        if len(tokens) < 4:
            raise ConfigError(f"line {number}: expected choose NAME LINE LINE ... (two run lines or more)")
        if unknown := [t for t in tokens[2:] if t not in run_lines]:
            raise ConfigError(f"line {number}: choose names no run line called {', '.join(unknown)}")
        choices.append(Choice(tokens[1], tuple(tokens[2:])))
    return choices


def read_setting(text: str, key: str) -> str:
    """The config's `KEY VALUE` line (`report PATH`, `data PATH`), or ""."""
    for line in text.splitlines():
        tokens = shlex.split(line, comments=True)
        if len(tokens) == 2 and tokens[0] == key:
            return tokens[1]
    return ""


def read_declarations(text: str) -> str:
    """The config's `#> ` lines, joined as Markdown: what a sweep declared (grid, seeds, choosing rule)
    before its runs, shown on its generated page."""
    return "\n".join(
        line[3:] if line.startswith("#> ") else line[2:] for line in text.splitlines() if line.startswith("#>")
    )


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
    config = {k: v for k, v in _with_new_fields(config).items() if k not in NOT_COMPARED}
    declared = methods.get(config["method"]).hyperparameters()  # older train.py runs recorded every method's flags
    config["hparams"] = methods.resolve(
        config["method"], {k: v for k, v in config.get("hparams", {}).items() if k in declared}
    )
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def run_identity(run: RunSpec, teacher: RunSpec | None) -> dict[str, Any]:
    """What a finished row must hold to count for `run`: its comparable configuration (and teacher's)."""
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
    wanted = run_identity(run, teacher)
    same_config = [row for row in rows if _found(row) == wanted]
    for row in reversed(same_config):
        if made_by_current_code(row):
            return row
    return same_config[-1] if any_code and same_config else None


def accepted_code_hashes(method: str) -> frozenset[str]:
    """The current code's hash for `method` and those shown to train identically (equivalence.py)."""
    return frozenset(equivalent_code_hashes(current_code_hash(method)))


def equivalent_code_hashes(code: str, path: str = EQUIVALENCE_PATH) -> set[str]:
    """`code` and every hash recorded as equivalent to it, following `same_as` back through refactors."""
    same_as: dict[str, set[str]] = {}
    for row in records.read(path):
        same_as.setdefault(row["code_hash"], set()).add(row["same_as"])
    accepted, todo = {code}, [code]
    while todo:
        for older in same_as.get(todo.pop(), ()):
            if older not in accepted:
                accepted.add(older)
                todo.append(older)
    return accepted


def made_by_current_code(row: dict[str, Any]) -> bool:
    return row.get("provenance", {}).get("code_hash") in accepted_code_hashes(row["config"]["method"])


def is_done(run: RunSpec, teacher: RunSpec | None, rows: list[dict[str, Any]]) -> bool:
    return finished_row(run, teacher, rows) is not None


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


@dataclasses.dataclass
class Study:
    """A comparison config read with its run data: what `compare` trains and reports."""

    config_path: str
    runs: list[RunSpec]
    teacher: RunSpec | None
    data_path: str
    report_path: str
    chart_path: str
    judged: list[str] = dataclasses.field(default_factory=list)
    targets: list[Target] = dataclasses.field(default_factory=list)
    choices: list[Choice] = dataclasses.field(default_factory=list)
    seeds: list[int] = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        """The config file's name without its extension (compare_cifar10)."""
        return os.path.splitext(os.path.basename(self.config_path))[0]

    def groups(self) -> list[tuple[RunSpec, list[dict]]]:
        return group_results(self.runs, self.teacher, records.read(self.data_path))


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
    judged, targets = read_verdict(text)
    seeds = sorted({run.config.seed for run in runs})
    return Study(
        config_path, runs, teacher, data_path, report_path, chart_path, judged, targets, read_choices(text), seeds
    )
