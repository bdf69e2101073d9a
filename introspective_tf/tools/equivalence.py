r"""Evidence that a change of the training code changed nothing a run learns, so finished runs stay valid.

`compare` reuses a finished run only when its training-code hash (`provenance.py`) matches the code
on disk. A refactor changes that hash without changing behaviour, and would throw away hours of
finished runs. This tool replays every distinct configuration among the finished runs and the
studies' planned runs (seeds aside) at a tiny,
deterministic budget (the mini data, a few one-step epochs) under the old code (a git commit) and
under the code on disk, and compares the loss after every epoch, the final training metrics and the
validation metrics *exactly*:

    python -m introspective_tf.tools.equivalence --baseline=COMMIT

If every replay of a method is bit-identical, it appends `{"code_hash": new, "same_as": old, ...}`
to `results/code_equivalence.jsonl`, and a study (`study.py`) accepts runs of the old hash as made by the new
code. One differing replay and nothing is recorded for that method: its runs are retrained. The rows
keep their own hash and commit, so the record of which code made a number is never rewritten.

Epoch-dependent settings (`*_epochs`, `*_from_epoch`) keep their value and the replay gets that many
epochs plus three, so a warm-up that ends is replayed past its end.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
from typing import Any

from introspective_tf import methods
from introspective_tf.errors import ConfigError
from introspective_tf.tools import study
from introspective_tf.training import provenance, records

DEFAULT_DATA = ("results/sweep_cifar10.jsonl", "results/compare_cifar10.jsonl")
DEFAULT_CONFIGS = ("configs/sweep_cifar10.cfg", "configs/compare_cifar10.cfg")
MINI_DATA = os.path.join(os.path.dirname(provenance.REPOSITORY_DIR), "shared", "data", "cifar10-mini")

# What a replay is compared by: everything a run learned, nothing about when or where it ran.
_COMPARED = (
    "train_loss_history",
    "final_train_metrics",
    "eval_accuracy",
    "eval_loss",
    "eval_nll",
    "eval_ece",
    "num_train",
    "num_eval",
    "steps_per_epoch",
)
# Config fields that are not train.py flags or that the replay sets itself.
_NOT_FLAGS = (
    "hparams",
    "output_dir",
    "export_dir",
    "verbose",
    "momentum",
    "validation_freq",
    "validation_steps",  # changes only the per-epoch validation columns, which are not compared
    "data_dir",
    "data_cache_dir",  # where decoded images are kept: the same tensors either way
    "explanation_images_every",  # draws, never trains; older code has no such flag
)
_NO_FLAG = {"momentum": 0.9}  # ExperimentConfig fields without a train.py flag, at their defaults
_NOT_DISTINCT = ("seed", *study.NOT_COMPARED)  # what makes runs of one configuration differ, not its code
_REPLAY = {"epochs": 3, "steps_per_epoch": 1, "batch_size": 32, "train_limit": 256}


def _epochs_needed(config: dict[str, Any]) -> int:
    epoch_settings = [
        math.ceil(v)
        for k, v in config.get("hparams", {}).items()
        if (k.endswith("_epochs") or k.endswith("_from_epoch")) and isinstance(v, (int, float))
    ]
    return min(config["epochs"], max(_REPLAY["epochs"], max(epoch_settings, default=0) + 3))


def replay_flags(config: dict[str, Any], data: str, output_dir: str, teacher_model: str = "") -> list[str]:
    """train.py's flags for a tiny deterministic replay of a finished run's configuration."""
    for name in _NO_FLAG:  # settings train.py cannot change: a replay could not reproduce another value
        if config.get(name, _NO_FLAG[name]) != _NO_FLAG[name]:
            raise ConfigError(f"cannot replay a run with {name}={config[name]}: train.py has no flag for it")
    values = {k: v for k, v in config.items() if k not in _NOT_FLAGS}
    values.update({k: v for k, v in _one_of_each_exclusive_pair(config).items() if k != "teacher"})
    values.update(
        _REPLAY,
        epochs=_epochs_needed(config),
        dataset=f"folder:{data}",
        deterministic=True,
        output_dir=output_dir,
        export_dir="none",
        verbose=0,
    )
    values["validation_freq"] = values["epochs"]
    if teacher_model:
        values["teacher"] = teacher_model
    return [f"--{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in sorted(values.items()) if v is not None]


def _one_of_each_exclusive_pair(config: dict[str, Any]) -> dict[str, Any]:
    """The run's hyper-parameters without the default-valued one of each pair its method declares
    exclusive: a row records every hyper-parameter, but train.py refuses both of such a pair given."""
    hparams = dict(config.get("hparams", {}))
    method = methods.METHODS.get(config["method"])
    declared = method.hyperparameters() if method else {}
    for pair in getattr(method, "exclusive_hyperparameters", ()):
        if all(name in hparams for name in pair):
            at_default = [name for name in pair if name in declared and hparams[name] == declared[name].default]
            if at_default:
                del hparams[at_default[0]]
    return hparams


def _replay(tree: str, config: dict[str, Any], data: str, scratch: str, name: str, teacher: dict | None) -> dict:
    teacher_model = ""
    if teacher is not None:
        teacher_dir = os.path.join(scratch, name + "-teacher")
        _run_train(tree, replay_flags(teacher, data, teacher_dir))
        teacher_model = os.path.join(teacher_dir, "model.keras")
    output_dir = os.path.join(scratch, name)
    results = _run_train(tree, replay_flags(config, data, output_dir, teacher_model))
    return {k: results.get(k) for k in _COMPARED}


def _run_train(tree: str, flags: list[str]) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": tree}
    if os.path.isfile(os.path.join(tree, "introspective_tf", "training", "explanation_images.py")):
        flags = [*flags, "--explanation_images_every=0"]  # pictures change nothing a run learns: seconds saved
    done = subprocess.run(
        [sys.executable, os.path.join(tree, "train.py"), *flags], cwd=tree, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("Pass --help")]
        raise ConfigError(f"the replay failed in {tree}: {(lines or ['no output'])[-1]}")
    output_dir = next(f.split("=", 1)[1] for f in flags if f.startswith("--output_dir="))
    with open(os.path.join(output_dir, "results.json")) as f:
        return json.load(f)


def code_hashes(tree: str, method_names: list[str]) -> dict[str, str]:
    """The training-code hash of each method's runs under the code in `tree` (computed by that code)."""
    # The hash function is in tools/study.py since the package was layered (before: compare.py at the top).
    # Chosen by file, not by trying the import: an editable install would answer for a module the tree lacks.
    layered = os.path.isfile(os.path.join(tree, "introspective_tf", "tools", "study.py"))
    module = "from introspective_tf.tools import study as s" if layered else "from introspective_tf import compare as s"
    snippet = f"import json, sys; {module}; print(json.dumps({{m: s.current_code_hash(m) for m in sys.argv[1:]}}))"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": tree}
    done = subprocess.run(
        [sys.executable, "-c", snippet, *method_names], cwd=tree, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"cannot compute the code hashes in {tree}: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def declared_defaults(tree: str) -> dict[str, dict[str, Any]]:
    """{method: {hyper-parameter: default}} as the code in `tree` declares them (computed by that code)."""
    snippet = (
        "import json; from introspective_tf import methods as m; "
        "print(json.dumps({n: {k: h.default for k, h in c.hyperparameters().items()} for n, c in m.METHODS.items()}, "
        "default=str))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": tree}
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"cannot read the hyper-parameters in {tree}: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def without_new_defaults(config: dict[str, Any], old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`config` without the hyper-parameters the baseline does not declare (`old`) where they hold the
    candidate's default (`new`): a setting added since, left at the value that keeps the old behaviour,
    so the baseline can replay the configuration. At any other value it stays, and the baseline cannot."""
    hparams = {k: v for k, v in config.get("hparams", {}).items() if k in old or k not in new or v != new[k]}
    return {**config, "hparams": hparams}


@dataclasses.dataclass
class Verdict:
    method: str
    old: str
    new: str
    replayed: list[str]
    differences: list[str]  # "run: field" of every replay that differs


def check(baseline: str, candidate: str, runs: list[dict], data: str = MINI_DATA) -> list[Verdict]:
    """Replays, in both trees, each distinct configuration of `runs` (rows or planned runs: "config",
    optional "teacher", "compare_run") whose method's training code differs between the trees. A row
    made by yet other code (its provenance's hash is not the baseline's) is skipped; seeds do not
    make configurations distinct (they change numbers, not which code runs)."""
    methods = sorted({run["config"]["method"] for run in runs})
    old_hashes, new_hashes = code_hashes(baseline, methods), code_hashes(candidate, methods)
    old_defaults, new_defaults = declared_defaults(baseline), declared_defaults(candidate)
    verdicts, seen = {}, set()
    with tempfile.TemporaryDirectory() as scratch:
        for run in runs:
            method = run["config"]["method"]
            old, new = old_hashes[method], new_hashes[method]
            made_by = run.get("provenance", {}).get("code_hash", old)
            if old == new or made_by != old:
                continue
            run = {
                **run,
                "config": without_new_defaults(run["config"], old_defaults.get(method, {}), new_defaults[method]),
            }
            key = json.dumps(
                [{k: v for k, v in run["config"].items() if k not in _NOT_DISTINCT}, run.get("teacher")],
                sort_keys=True,
                default=str,
            )
            if key in seen:
                continue
            seen.add(key)
            name = f"{run.get('compare_run') or method}-{len(seen)}"
            try:
                got = [
                    _replay(baseline, run["config"], data, os.path.join(scratch, "baseline"), name, run.get("teacher"))
                ]
            except ConfigError as err:
                if "provenance" in run:  # a finished run the baseline made: it must replay
                    raise
                # A planned line with a setting the baseline does not have: no finished run can come from it.
                print(f"{name}: skipped, the baseline cannot run it ({err})", flush=True)
                continue
            got.append(
                _replay(candidate, run["config"], data, os.path.join(scratch, "candidate"), name, run.get("teacher"))
            )
            verdict = verdicts.setdefault(method, Verdict(method, old, new, [], []))
            verdict.replayed.append(name)
            different = [f"{name}: {k}" for k in _COMPARED if got[0][k] != got[1][k]]
            verdict.differences += different
            print(f"{name}: {'DIFFERENT' if different else 'identical'}", flush=True)
    return list(verdicts.values())


def planned_runs(config_path: str) -> list[dict]:
    """The run lines of a comparison config as replayable runs (method defaults resolved)."""
    with open(config_path) as f:
        specs, teacher = study.parse_config(f.read(), tempfile.gettempdir())
    runs = []
    for spec in ([teacher] if teacher else []) + specs:
        run = {"compare_run": spec.name, "config": study.comparable(dataclasses.asdict(spec.config))}
        if spec.uses_teacher:
            run["teacher"] = study.comparable(dataclasses.asdict(teacher.config))
        runs.append(run)
    return runs


def record(verdicts: list[Verdict], baseline_commit: str, path: str = study.EQUIVALENCE_PATH) -> int:
    """Appends an equivalence row for every method whose replays were all identical; how many."""
    added = 0
    for verdict in verdicts:
        if verdict.differences:
            continue
        records.add(
            path,
            {
                "method": verdict.method,
                "code_hash": verdict.new,
                "same_as": verdict.old,
                "baseline_commit": baseline_commit,
                "candidate": provenance.record()["git_commit"],
                "replayed": verdict.replayed,
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            },
        )
        added += 1
    return added


def export_commit(commit: str, directory: str) -> None:
    """The package and train.py as they were at `commit`, written under `directory`."""
    archive = subprocess.run(
        ["git", "-C", provenance.REPOSITORY_DIR, "archive", commit, "introspective_tf", "train.py"], capture_output=True
    )
    if archive.returncode != 0:
        raise ConfigError(f"cannot read commit '{commit}': {archive.stderr.decode().strip().splitlines()[-1]}")
    path = os.path.join(directory, "baseline.tar")
    with open(path, "wb") as f:
        f.write(archive.stdout)
    with tarfile.open(path) as tar:
        tar.extractall(directory, filter="data")


def main(argv: list[str]) -> None:
    del argv
    from absl import flags

    try:
        _check_and_record(flags.FLAGS)
    except ConfigError as err:
        sys.exit(f"error: {err}")


def _check_and_record(args) -> None:
    if not os.path.isdir(os.path.join(args.mini_data, "train")):
        raise ConfigError(f"no mini data at {args.mini_data}: set --mini_data")
    runs = [row for path in args.data for row in records.read(path) if "config" in row]
    runs += [run for path in args.configs for run in planned_runs(path)]
    with tempfile.TemporaryDirectory() as baseline:
        export_commit(args.baseline, baseline)
        verdicts = check(baseline, provenance.REPOSITORY_DIR, runs, args.mini_data)
    if not verdicts:
        print("no finished run was made by the baseline's code under another hash: nothing to check")
        return
    for v in verdicts:
        outcome = "identical: recorded" if not v.differences else "differs: " + ", ".join(v.differences)
        print(f"{v.method} {v.old} -> {v.new}, {len(v.replayed)} replays: {outcome}")
    if not args.dry_run:
        record(verdicts, args.baseline)
    if any(v.differences for v in verdicts):
        sys.exit(1)


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("baseline", None, "Git commit of the code that made the finished runs.", required=True)
    flags.DEFINE_list("data", list(DEFAULT_DATA), "Run data files whose runs to replay.")
    flags.DEFINE_list("configs", list(DEFAULT_CONFIGS), "Comparison configs whose run lines to replay as well.")
    flags.DEFINE_string("mini_data", MINI_DATA, "Small image folder (ROOT/train/CLASS/*.jpg) for the replays.")
    flags.DEFINE_bool("dry_run", False, "Check only; record nothing.")
    app.run(main)
