"""Bad input: one clear `ConfigError` message, and nothing an earlier run wrote is changed."""

import hashlib
import shutil
import sys
import types

import pytest
import tensorflow as tf
from conftest import MINI

from introspective_tf import models, teacher
from introspective_tf.errors import ConfigError
from introspective_tf.training import data as data_lib
from introspective_tf.training import distribute, experiment


@pytest.fixture
def previous_run(tmp_path):
    """An output dir and an export that an earlier run left behind."""
    run, export = tmp_path / "run", tmp_path / "export"
    for path, text in [
        (run / "results.json", '{"eval_accuracy": 0.9}'),
        (run / "history.csv", "epoch,loss\n0,1.0\n"),
        (run / "checkpoints" / "last.weights.h5", "weights"),
        (run / "model.keras", "model"),
        (export / "saved_model.pb", "export"),
    ]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    before = _snapshot(tmp_path)
    yield run, export
    after = _snapshot(tmp_path)
    assert {k: after.get(k) for k in before} == before, "an earlier output was changed"


def _snapshot(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _config(previous_run, dataset, **overrides):
    run, export = previous_run
    values = dict(
        dataset=dataset,
        method="standard",
        model="small_cnn",
        epochs=1,
        batch_size=20,
        steps_per_epoch=2,
        train_limit=40,
        output_dir=str(run),
        export_dir=str(export),
        verbose=0,
    )
    return experiment.ExperimentConfig(**{**values, **overrides})


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(dataset="imagenet_v2"), "unknown dataset 'imagenet_v2'"),
        (dict(method="teacher_free"), "unknown method 'teacher_free'"),
        (dict(model="vgg"), "unknown model 'vgg'"),
        (dict(strategy="horovod"), "unknown strategy 'horovod'"),
        (dict(mixed_precision="float8"), "mixed_precision must be one of"),
        (dict(epochs=-1), "epochs must be > 0, not -1"),
        (dict(batch_size=0), "batch_size must be > 0"),
        (dict(explanation_images_every=-1), r"explanation_images_every must be >= 0 \(0 = off\), not -1"),
        (dict(method="introspective", hparams={"alpha": 1.5}), r"alpha must be in \[0, 1\], not 1.5"),
        (dict(method="introspective", hparams={"alpha": -0.1}), r"alpha must be in \[0, 1\], not -0.1"),
        (dict(method="introspective", hparams={"temperature": 0.0}), "temperature must be > 0, not 0.0"),
        (dict(method="introspective", hparams={"temperature": -2.0}), "temperature must be > 0, not -2.0"),
        (dict(strategy="tpu"), "--strategy=tpu needs --tpu"),
    ],
)
def test_bad_values(previous_run, mini_dataset, overrides, message):
    with pytest.raises(ConfigError, match=message):
        experiment.run(_config(previous_run, **{"dataset": mini_dataset, **overrides}))


def test_batch_size_not_divisible_by_replicas(previous_run, mini_dataset, monkeypatch):
    two_cpus = [d.name for d in tf.config.list_logical_devices("CPU")[:2]]
    assert len(two_cpus) == 2
    monkeypatch.setattr(distribute, "make_strategy", lambda name, tpu="": tf.distribute.MirroredStrategy(two_cpus))
    with pytest.raises(ConfigError, match="batch_size 21 is not divisible by the 2 replicas"):
        experiment.run(_config(previous_run, mini_dataset, strategy="mirrored", batch_size=21))


def _folder(root, classes=("cat", "dog"), per_class=4):
    for name in classes:
        (root / "train" / name).mkdir(parents=True)
        for image in sorted((MINI / "train" / name).glob("*.jpg"))[:per_class]:
            shutil.copy(image, root / "train" / name / image.name)
    return root


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda root: root / "nowhere", "does not exist"),
        (lambda root: (root / "test").mkdir(parents=True) or root, "has no train/ subfolder"),
        (lambda root: _folder(root, per_class=0), "has no .jpg/.jpeg/.png images"),
        (lambda root: _folder(root, classes=("cat",)), "needs at least 2 class folders"),
    ],
)
def test_unusable_folder_datasets(previous_run, tmp_path, mini_dataset, make, message):
    root = make(tmp_path / "data")
    with pytest.raises(ConfigError, match=message):
        experiment.run(_config(previous_run, f"folder:{root}", eval_split="validation"))


def test_corrupt_image_names_the_file(previous_run, tmp_path, mini_dataset):
    root = _folder(tmp_path / "data", per_class=20)
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(ConfigError, match=r"1 image file\(s\) cannot be decoded; fix or remove them: .*dog/broken.jpg"):
        experiment.run(
            _config(
                previous_run,
                f"folder:{root}",
                eval_split="validation",
                batch_size=8,
                train_limit=0,
                steps_per_epoch=0,
                validation_split=0.2,
            )
        )


def test_tfds_without_network_says_how_to_use_local_data(previous_run, tmp_path, monkeypatch):
    monkeypatch.setattr(data_lib, "DOWNLOAD_PROBE", ("unreachable.invalid", 443))  # never downloads in tests
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)  # an earlier test may have imported it
    with pytest.raises(
        ConfigError, match=r"no network to download it: point --data_dir=DIR .* or use --dataset=folder:ROOT"
    ):
        experiment.run(_config(previous_run, "cifar10", data_dir=str(tmp_path / "tfds")))
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))  # in a notebook: arguments, not flags
    with pytest.raises(ConfigError, match=r'point data_dir="DIR" .* or use dataset="folder:ROOT"'):
        experiment.run(_config(previous_run, "cifar10", data_dir=str(tmp_path / "tfds")))


@pytest.mark.slow
def test_train_py_without_a_prepared_tfds_dataset_prints_only_the_error(tmp_path):
    """TFDS logs an absl warning about the empty version folder it finds; the user sees only our line."""
    import subprocess

    from conftest import REPO

    argv = ["train.py", "--dataset=cifar10", f"--data_dir={tmp_path / 'tfds'}", f"--output_dir={tmp_path / 'run'}"]
    code = (
        "import runpy, sys\n"
        "from introspective_tf.training import data\n"
        "data.DOWNLOAD_PROBE = ('unreachable.invalid', 443)  # never downloads in tests\n"
        f"sys.argv = {argv!r}\n"
        "runpy.run_path('train.py', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: TFDS dataset 'cifar10' is not prepared in {tmp_path / 'tfds' / 'cifar10'}/")
    assert line.endswith(
        "no network to download it: point --data_dir=DIR at a prepared TFDS directory or use "
        "--dataset=folder:ROOT (ROOT/train/CLASS/*.jpg)"
    )
    assert not (tmp_path / "run").exists()


def test_output_dir_not_writable(previous_run, tmp_path, mini_dataset):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="output_dir '.*a-file/run' is not writable"):
        experiment.run(_config(previous_run, mini_dataset, output_dir=str(blocker / "run")))
    with pytest.raises(ConfigError, match="export_dir's parent '.*a-file' is not writable"):
        experiment.run(_config(previous_run, mini_dataset, export_dir=str(blocker / "export")))
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize(
    "shape,classes,message",
    [
        ((32, 32, 3), 100, r"teacher '.*teacher.keras' has 100 classes, the data has 10"),
        ((28, 28, 1), 10, r"teacher '.*teacher.keras' takes images of shape \(28, 28, 1\), the data has \(32, 32, 3\)"),
    ],
)
def test_teacher_that_does_not_fit_the_data(tmp_path, shape, classes, message):
    path = tmp_path / "teacher.keras"
    models.small_cnn(shape, classes).save(path)
    with pytest.raises(ConfigError, match=message):
        teacher.load(str(path), (32, 32, 3), 10)
    assert teacher.load(str(path), shape, classes).num_classes == classes


def test_teacher_file_missing_or_not_a_model(tmp_path):
    with pytest.raises(ConfigError, match="neither a .keras file nor a SavedModel folder"):
        teacher.load(str(tmp_path / "none.keras"), (32, 32, 3), 10)
    (tmp_path / "junk.keras").write_text("junk")
    with pytest.raises(ConfigError, match="cannot load teacher '.*junk.keras' as a .keras model"):
        teacher.load(str(tmp_path / "junk.keras"), (32, 32, 3), 10)


TOOLS_WITH_BAD_VARIANTS = {
    "benchmark": (["--methods=standard,introspective:alpha=lots"], "alpha=lots is not a valid float"),
    "agreement": (["--model_path=none.keras", "--variants=colour=red"], "takes no hyper-parameter 'colour'"),
}


@pytest.fixture(scope="module")
def tools_refusing_bad_variants():
    """{tool: its CompletedProcess}: `python -m introspective_tf.tools.TOOL ...` with a bad variant; they stop
    before any work, so they run in processes forked from one interpreter that started TensorFlow once
    (tests/commands.py)."""
    from commands import run_forked
    from conftest import REPO

    commands = [["-m", f"introspective_tf.tools.{tool}", *args] for tool, (args, _) in TOOLS_WITH_BAD_VARIANTS.items()]
    return dict(zip(TOOLS_WITH_BAD_VARIANTS, run_forked(commands, cwd=REPO)))


@pytest.mark.slow
@pytest.mark.parametrize("tool", TOOLS_WITH_BAD_VARIANTS)
def test_tools_refuse_bad_variants_in_one_line_before_any_work(tools_refusing_bad_variants, tool):
    done, message = tools_refusing_bad_variants[tool], TOOLS_WITH_BAD_VARIANTS[tool][1]
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert message in done.stderr


def test_a_variant_without_a_value_is_a_config_error():
    from introspective_tf.tools.variants import parse_settings

    assert parse_settings("explanation=gradient;num_probes=4") == {"explanation": "gradient", "num_probes": "4"}
    with pytest.raises(ConfigError, match="key=value;key=value, not 'alpha'"):
        parse_settings("alpha")
