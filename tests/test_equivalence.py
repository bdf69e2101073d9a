"""Code equivalence: a refactor that trains bit-identically keeps finished runs; one that does not, does not."""

import shutil

import background
import pytest

from introspective_tf.errors import ConfigError
from introspective_tf.tools import equivalence, study
from introspective_tf.training import provenance


def _copy_of_the_code(root):
    shutil.copytree(provenance.PACKAGE_DIR, root / "introspective_tf", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(provenance.REPOSITORY_DIR + "/train.py", root / "train.py")
    return root


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _row(method, code_hash, **hparams):
    config = {
        "dataset": "folder:elsewhere",
        "method": method,
        "model": "small_cnn",
        "epochs": 60,
        "batch_size": 128,
        "learning_rate": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "cosine",
        "steps_per_epoch": 0,
        "seed": 3,
        "output_dir": "runs/x",
        "export_dir": "none",
        "data_dir": None,
        "eval_split": "validation",
        "validation_split": 0.1,
        "train_limit": 5000,
        "jit_compile": False,
        "verbose": 2,
        "validation_freq": 20,
        "hparams": hparams,
        "strategy": "default",
        "tpu": "",
        "sync_batchnorm": True,
        "mixed_precision": "float32",
        "deterministic": False,
    }
    return {"compare_run": method, "config": config, "provenance": {"code_hash": code_hash}}


def test_accepted_hashes_follow_same_as_back_through_refactors(tmp_path):
    path = str(tmp_path / "equivalence.jsonl")
    assert study.equivalent_code_hashes("c", path) == {"c"}
    for new, old in (("b", "a"), ("c", "b"), ("x", "c")):
        equivalence.records.add(path, {"method": "standard", "code_hash": new, "same_as": old})
    assert study.equivalent_code_hashes("c", path) == {"a", "b", "c"}  # not the later "x"
    assert study.equivalent_code_hashes("a", path) == {"a"}


def test_replay_keeps_epoch_dependent_settings_and_shrinks_the_rest():
    flags = equivalence.replay_flags(
        _row("introspective", "h", warmup_epochs=29.5, alpha=0.2)["config"], "/mini", "/out"
    )
    assert "--epochs=33" in flags and "--warmup_epochs=29.5" in flags and "--alpha=0.2" in flags
    assert "--steps_per_epoch=1" in flags and "--deterministic=true" in flags and "--dataset=folder:/mini" in flags
    assert not any(f.startswith(("--momentum", "--hparams", "--data_dir")) for f in flags)
    assert "--epochs=3" in equivalence.replay_flags(_row("standard", "h")["config"], "/mini", "/out")
    with pytest.raises(ConfigError, match="cannot replay a run with momentum=0.5"):
        equivalence.replay_flags({**_row("standard", "h")["config"], "momentum": 0.5}, "/mini", "/out")


def test_replay_passes_only_the_set_one_of_an_exclusive_pair():
    """A row records every hyper-parameter; train.py refuses both of an exclusive pair, so the replay
    leaves out the one at its default (here tau, when the true-class mass sets it)."""
    config = _row("introspective", "h", similarity_temperature=0.01, target_true_mass=0.75)["config"]
    flags = equivalence.replay_flags(config, "/mini", "/out")
    assert "--target_true_mass=0.75" in flags and not any(f.startswith("--similarity_temperature") for f in flags)
    config = _row("introspective", "h", similarity_temperature=0.05, target_true_mass=0.0)["config"]
    flags = equivalence.replay_flags(config, "/mini", "/out")
    assert "--similarity_temperature=0.05" in flags and not any(f.startswith("--target_true_mass") for f in flags)


@background.fixture
def refactors_checked(tmp_path):
    """equivalence.check on a copy of the code with a neutral refactor and a behaviour change, against a copy
    that predates a setting (its replays are train.py processes), in the background (tests/background.py):
    (tmp_path, the baseline's code hashes, {method: verdict}, what check printed)."""
    from conftest import MINI

    if not (MINI / "train").is_dir():
        pytest.skip("real data not found")
    baseline = _copy_of_the_code(tmp_path / "baseline")
    candidate = _copy_of_the_code(tmp_path / "candidate")
    # The baseline predates a setting: a planned line that uses it is skipped, not an error.
    _edit(baseline / "introspective_tf" / "training" / "data.py", '"validation", "holdout")', '"validation")')
    # Neutral for every method: a renamed local variable in the data pipeline (a new syntax tree).
    data_module = candidate / "introspective_tf" / "training" / "data.py"
    _edit(data_module, "            fixed = image\n", "            fixed = same = image\n")
    # A behaviour change in one method.
    _edit(
        candidate / "introspective_tf" / "methods" / "label_smoothing.py",
        "target = (1.0 - smoothing) * target",
        "target = (1.0 - 0.5 * smoothing) * target",
    )
    old = equivalence.code_hashes(str(baseline), ["standard", "label_smoothing"])
    rows = [
        _row("standard", old["standard"]),
        _row("label_smoothing", old["label_smoothing"], smoothing=0.1),
        _row("standard", "made-by-other-code"),
        {"config": {**_row("standard", "")["config"], "eval_split": "holdout"}},  # planned: no provenance
    ]
    # This runs in a thread beside the tests: check()'s lines are collected by a `print` in the module's
    # namespace (sys.stdout belongs to the test running meanwhile); no other test calls check().
    printed, code_hashes = [], equivalence.code_hashes
    # check() asks the baseline for the same hashes: the answer above, not a second TensorFlow start-up.
    equivalence.code_hashes = lambda tree, names: (
        dict(old) if (tree, sorted(names)) == (str(baseline), sorted(old)) else code_hashes(tree, names)
    )
    equivalence.print = lambda *values, **_: printed.append(" ".join(map(str, values)))
    try:
        verdicts = {v.method: v for v in equivalence.check(str(baseline), str(candidate), rows, str(MINI))}
    finally:
        equivalence.code_hashes = code_hashes
        del equivalence.print
    return tmp_path, old, verdicts, "\n".join(printed)


@pytest.mark.slow
def test_a_neutral_refactor_is_equivalent_and_a_behaviour_change_is_not(refactors_checked):
    tmp_path, old, verdicts, printed = refactors_checked
    assert verdicts["standard"].differences == [] and len(verdicts["standard"].replayed) == 1
    assert "standard-3: skipped, the baseline cannot run it" in printed
    assert verdicts["standard"].new != verdicts["standard"].old
    assert any("train_loss_history" in d for d in verdicts["label_smoothing"].differences)
    path = tmp_path / "equivalence.jsonl"
    assert equivalence.record(list(verdicts.values()), "abc", str(path)) == 1
    assert study.equivalent_code_hashes(verdicts["standard"].new, str(path)) == {
        verdicts["standard"].new,
        old["standard"],
    }


def test_planned_runs_resolve_defaults_and_give_kd_its_teacher(tmp_path):
    config = tmp_path / "c.cfg"
    config.write_text(
        "common --model=small_cnn --epochs=5\nseeds 0 1\nteacher --model=resnet20 --method=standard\n"
        "ls --method=label_smoothing\nkd --method=kd\n"
    )
    planned = equivalence.planned_runs(str(config))
    assert [run["compare_run"] for run in planned] == ["teacher", "ls", "ls", "kd", "kd"]
    runs = {run["compare_run"]: run for run in planned}
    assert runs["ls"]["config"]["hparams"] == {"smoothing": 0.1}
    assert runs["kd"]["teacher"]["model"] == "resnet20" and "teacher" not in runs["ls"]


def test_a_setting_added_since_the_baseline_is_left_out_of_its_replay_only_at_its_default():
    old = {"alpha": 0.2}
    new = {"alpha": 0.2, "target_true_mass": 0.0}
    config = {"method": "introspective", "hparams": {"alpha": 0.5, "target_true_mass": 0.0}}
    assert equivalence.without_new_defaults(config, old, new)["hparams"] == {"alpha": 0.5}
    config["hparams"]["target_true_mass"] = 0.8  # a new behaviour: the baseline cannot run it, and must not
    assert equivalence.without_new_defaults(config, old, new)["hparams"] == {"alpha": 0.5, "target_true_mass": 0.8}
