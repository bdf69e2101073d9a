"""The decoded copy of a folder dataset on disk (folder_cache.py): the same tensors as decoding the files,
used only while it matches the folder, rebuilt when it does not, and never left half written."""

import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO

from introspective_tf.errors import ConfigError
from introspective_tf.training import data, folder_cache


def _arrays(ds: tf.data.Dataset) -> list:
    return [tf.nest.map_structure(lambda t: t.numpy(), batch) for batch in ds]


def _contents(loaded: data.Data, epochs: int = 2) -> tuple:
    """What a run sees, read once: each new pass over `train` is reshuffled, so a Data is read only once."""
    fields = ("num_train", "num_eval", "eval_split", "image_shape", "num_classes", "class_names")
    return {f: getattr(loaded, f) for f in fields}, _arrays(loaded.train.repeat(epochs)), _arrays(loaded.eval)


def _assert_same(first: tuple, second: tuple) -> None:
    """The same fields, every training batch of two epochs (reshuffled after the first) and every
    evaluation batch, bit for bit and in order."""
    assert first[0] == second[0]
    for a_batches, b_batches in zip(first[1:], second[1:]):
        assert len(a_batches) == len(b_batches)
        for a, b in zip(a_batches, b_batches):
            tf.nest.map_structure(np.testing.assert_array_equal, a, b)


@pytest.fixture
def cache(tmp_path) -> pathlib.Path:
    """A cache folder of the test's own (not yet made: the first load makes it)."""
    return tmp_path / "cache"


@pytest.fixture
def small_folder(tmp_path, mini_dataset) -> pathlib.Path:
    """A copy of part of cifar10-mini (2 classes, 15 training and 5 test images each) that a test may change."""
    source = pathlib.Path(mini_dataset[len("folder:") :])
    root = tmp_path / "small"
    for split, count in (("train", 15), ("test", 5)):
        for label in ("cat", "dog"):
            (root / split / label).mkdir(parents=True)
            for path in sorted((source / split / label).iterdir())[:count]:
                shutil.copy2(path, root / split / label / path.name)
    return root


@pytest.mark.parametrize(
    "eval_split,validation_split,train_limit,example_index",
    [("validation", 0.1, 300, False), ("holdout", 0.2, 0, True), ("test", 0.1, 0, False)],
)
def test_the_cache_yields_the_same_tensors_in_the_same_order(
    cache, mini_dataset, eval_split, validation_split, train_limit, example_index
):
    settings = dict(
        batch_size=32,
        eval_split=eval_split,
        validation_split=validation_split,
        train_limit=train_limit,
        seed=7,
        example_index=example_index,
    )
    files = _contents(data.load(mini_dataset, **settings))
    assert len(files[1]) > 1 and len(files[2]) > 1
    _assert_same(files, _contents(data.load(mini_dataset, cache_dir=str(cache), **settings)))  # writes the copy
    assert len(list(cache.glob("*.npz"))) == (2 if eval_split == "test" else 1)
    _assert_same(files, _contents(data.load(mini_dataset, cache_dir=str(cache), **settings)))  # reads it


def test_a_second_load_reads_the_copy_and_decodes_nothing(cache, small_folder, monkeypatch, capsys):
    dataset = f"folder:{small_folder}"
    data.load(dataset, batch_size=4, cache_dir=str(cache))
    assert "decoding the 30 images" in capsys.readouterr().out  # a miss says so, and where the copy goes
    written = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert sorted(written) == sorted(
        os.path.basename(folder_cache.cache_path(str(cache), str(small_folder), s)) for s in ("test", "train")
    )

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the copy is current")

    monkeypatch.setattr(folder_cache, "_decode_all", no_decoding)
    cached = data.load(dataset, batch_size=4, cache_dir=str(cache))
    assert capsys.readouterr().out == ""  # a hit is silent
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == written
    _assert_same(_contents(data.load(dataset, batch_size=4)), _contents(cached))


@pytest.mark.parametrize("change", ["replaced", "touched", "added", "removed"])
def test_a_changed_folder_rebuilds_the_copy(cache, small_folder, capsys, change):
    dataset = f"folder:{small_folder}"
    before = data.load(dataset, batch_size=4, cache_dir=str(cache), augment=False)
    images = sorted((small_folder / "train" / "cat").iterdir())
    if change == "replaced":  # another image's bytes under this name
        images[0].write_bytes(images[1].read_bytes())
    elif change == "touched":
        os.utime(images[0], ns=(time.time_ns(), images[0].stat().st_mtime_ns + 10**9))
    elif change == "added":
        shutil.copy2(images[0], images[0].with_name("extra.jpg"))
    else:
        images[0].unlink()
    capsys.readouterr()
    after = data.load(dataset, batch_size=4, cache_dir=str(cache), augment=False)
    assert "(the cached copy is stale" in capsys.readouterr().out
    after = _contents(after)
    _assert_same(_contents(data.load(dataset, batch_size=4, augment=False)), after)
    if change != "touched":
        before = _contents(before)
        assert before[0] != after[0] or any(not np.array_equal(a[0], b[0]) for a, b in zip(before[1], after[1]))


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "not a zip", "empty"])
def test_a_corrupt_copy_is_rebuilt(cache, small_folder, capsys, damage):
    dataset = f"folder:{small_folder}"
    data.load(dataset, batch_size=4, cache_dir=str(cache))
    path = pathlib.Path(folder_cache.cache_path(str(cache), str(small_folder), "train"))
    content = bytearray(path.read_bytes())
    if damage == "flipped byte":  # inside the images: only the zip's CRC-32 tells
        content[len(content) // 2] ^= 0xFF
    path.write_bytes(
        {"flipped byte": bytes(content), "truncated": bytes(content[:-100]), "not a zip": b"x" * 1000, "empty": b""}[
            damage
        ]
    )
    capsys.readouterr()
    rebuilt = data.load(dataset, batch_size=4, cache_dir=str(cache))
    assert "(the cached copy is unreadable" in capsys.readouterr().out
    _assert_same(_contents(data.load(dataset, batch_size=4)), _contents(rebuilt))
    data.load(dataset, batch_size=4, cache_dir=str(cache))
    assert capsys.readouterr().out == ""  # whole again


def test_an_interrupted_write_leaves_no_copy_and_old_leftovers_go(cache, small_folder, monkeypatch):
    dataset = f"folder:{small_folder}"
    path = pathlib.Path(folder_cache.cache_path(str(cache), str(small_folder), "train"))
    cache.mkdir()
    leftover = cache / f".tmp-999999-{path.name}"  # of a writer killed long ago
    leftover.write_bytes(b"half")
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    real_savez = np.savez

    def killed_half_way(file, **arrays):
        real_savez(file, key=arrays["key"])
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", killed_half_way)
    with pytest.raises(KeyboardInterrupt):
        data.load(dataset, batch_size=4, cache_dir=str(cache))
    assert list(cache.iterdir()) == []  # neither the copy nor a temporary file
    monkeypatch.setattr(np, "savez", real_savez)
    data.load(dataset, batch_size=4, cache_dir=str(cache))
    assert path.exists() and not list(cache.glob(".tmp-*"))


def test_a_copy_that_cannot_be_written_costs_only_the_copy(cache, small_folder, monkeypatch, capsys):
    def disk_full(file, **arrays):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    loaded = _contents(data.load(f"folder:{small_folder}", batch_size=4, cache_dir=str(cache)))
    assert "(No space left on device); this run goes on without it" in capsys.readouterr().out
    assert list(cache.iterdir()) == []
    _assert_same(_contents(data.load(f"folder:{small_folder}", batch_size=4)), loaded)


def test_a_corrupt_image_is_named_and_no_copy_is_written(cache, small_folder):
    broken = small_folder / "train" / "dog" / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ConfigError, match=r"1 image file\(s\) cannot be decoded; fix or remove them: .*broken.jpg"):
        with data.naming_unreadable_images(f"folder:{small_folder}"):
            data.load(f"folder:{small_folder}", batch_size=4, cache_dir=str(cache))
    assert not list(cache.glob("*.npz"))


def test_a_cache_dir_that_cannot_be_made_is_a_config_error(tmp_path, small_folder):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"^data_cache_dir '.*a-file/cache' is not usable"):
        data.load(f"folder:{small_folder}", batch_size=4, cache_dir=str(blocker / "cache"))


def test_where_the_cache_lives(monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert folder_cache.resolve_dir("") == os.path.join(os.path.expanduser("~"), ".cache", "introspective_tf")
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert folder_cache.resolve_dir("") == "/somewhere/introspective_tf"
    assert folder_cache.resolve_dir("none") is None and folder_cache.resolve_dir("None") is None
    assert folder_cache.resolve_dir("~/x") == os.path.join(os.path.expanduser("~"), "x")


@pytest.mark.slow
def test_train_py_names_an_unusable_cache_dir_on_one_line(tmp_path, mini_dataset):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            f"--dataset={mini_dataset}",
            f"--data_cache_dir={blocker / 'cache'}",
            f"--output_dir={tmp_path / 'run'}",
            "--export_dir=none",
        ],
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: data_cache_dir '{blocker / 'cache'}' is not writable: '{blocker}' is a file"
    )
    assert not (tmp_path / "run").exists()
