"""Evaluation images are never augmented: the eval pipeline gives the decoded image files, exactly and in order.

The reference is built without the pipeline: the files named by the split's order (TFDS' `image/filename`
feature, the order `data.load` takes its examples in), read and decoded from disk with `tf.io`, labelled
by their class folder. Training on the same data is augmented (CIFAR-shaped colour images), so an
augmentation leaking into evaluation would show; a test checks that the comparison catches one.
"""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from conftest import MINI

from introspective_tf.training import data

BATCH = 32  # does not divide the split sizes: the last batch is short, and kept


def _raw(split: str, last: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The split's images decoded straight from their files (the last `last` of them), and their labels."""
    filenames = [
        example["image/filename"].numpy().decode()
        for example in tfds.folder_dataset.ImageFolder(str(MINI)).as_dataset(split=split, shuffle_files=False)
    ]
    filenames = filenames[-last:] if last else filenames
    classes = sorted(os.listdir(MINI / "train"))
    images = np.stack([tf.io.decode_jpeg(tf.io.read_file(name), channels=3).numpy() for name in filenames])
    labels = np.array([classes.index(os.path.basename(os.path.dirname(name))) for name in filenames])
    return images, labels


def _mismatches(dataset: data.Data, images: np.ndarray, labels: np.ndarray) -> list[str]:
    """How the eval pipeline differs from the raw images over two passes (empty: no difference)."""
    problems = []
    for attempt in ("first", "second"):
        batches = list(dataset.eval.as_numpy_iterator())
        sizes = [len(y) for _, y in batches]
        expected_sizes = [BATCH] * (len(labels) // BATCH) + ([len(labels) % BATCH] if len(labels) % BATCH else [])
        if sizes != expected_sizes:
            problems.append(f"{attempt} pass: batch sizes {sizes}, not {expected_sizes}")
            continue
        got_images = np.concatenate([x for x, _ in batches])
        got_labels = np.concatenate([y for _, y in batches])
        if got_images.dtype != np.float32:
            problems.append(f"{attempt} pass: images are {got_images.dtype}, not float32 pixels")
        if not np.array_equal(got_labels, labels):
            problems.append(f"{attempt} pass: labels differ from the files' class folders")
        differ = np.flatnonzero(np.any(got_images != images.astype(np.float32), axis=(1, 2, 3)))
        if differ.size:
            problems.append(
                f"{attempt} pass: {differ.size} of {len(labels)} images differ from their files, e.g. #{differ[0]}"
            )
    return problems


@pytest.fixture(scope="module")
def validation_reference():
    if not (MINI / "train").is_dir():
        pytest.skip("real data not found")
    num_train = tfds.folder_dataset.ImageFolder(str(MINI)).info.splits["train"].num_examples
    return _raw("train", last=int(round(num_train * 0.1)))


def test_validation_batches_are_the_decoded_files_in_order(validation_reference):
    images, labels = validation_reference
    dataset = data.load(f"folder:{MINI}", batch_size=BATCH, eval_split="validation", validation_split=0.1)
    assert dataset.eval_split == "validation" and dataset.num_eval == len(labels) == 100
    assert _mismatches(dataset, images, labels) == []


def test_test_batches_are_the_decoded_files_in_order(validation_reference):
    images, labels = _raw("test")
    dataset = data.load(f"folder:{MINI}", batch_size=BATCH, eval_split="test", augment=True)
    assert dataset.eval_split == "test" and dataset.num_eval == len(labels) == 200
    assert _mismatches(dataset, images, labels) == []


def test_the_check_catches_augmented_evaluation(validation_reference, monkeypatch):
    """The same check on a pipeline that augments evaluation images, as training does, fails."""
    images, labels = validation_reference

    def augmenting_eval_pipeline(ds, image_shape, batch_size):
        ds = tf.data.Dataset.zip((data._decoded(ds, image_shape), tf.data.Dataset.random(seed=0).batch(2)))
        ds = ds.map(lambda pair, seed: (tf.cast(data.augment_cifar(pair[0], seed), tf.float32), pair[1]))
        return ds.batch(batch_size)

    monkeypatch.setattr(data, "_eval_pipeline", augmenting_eval_pipeline)
    dataset = data.load(f"folder:{MINI}", batch_size=BATCH, eval_split="validation", validation_split=0.1)
    problems = _mismatches(dataset, images, labels)
    assert len(problems) == 2 and all("images differ from their files" in p for p in problems), problems
