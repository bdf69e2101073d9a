"""Input pipelines on the real CIFAR-10 images in ../shared/data."""

import hashlib
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from introspective_tf.errors import ConfigError
from introspective_tf.training import data


def _hashes(ds):
    return {hashlib.sha1(image.numpy().tobytes()).hexdigest() for batch, _ in ds for image in batch}


def test_folder_dataset_with_its_test_split(mini_dataset):
    d = data.load(mini_dataset, batch_size=50)
    assert (d.num_train, d.num_eval, d.eval_split, d.num_classes) == (1000, 200, "test", 10)
    assert d.image_shape == (32, 32, 3)
    assert d.class_names[:3] == ["airplane", "automobile", "bird"]
    images, labels = next(iter(d.train))
    assert images.shape == (50, 32, 32, 3) and images.dtype == tf.float32
    assert labels.dtype == tf.int32 and 0 <= labels.numpy().min() and labels.numpy().max() < 10
    assert 0 <= images.numpy().min() and images.numpy().max() <= 255


def test_validation_split_is_held_out_and_never_trained_on(mini_dataset):
    d = data.load(mini_dataset, batch_size=1, eval_split="validation", validation_split=0.1, augment=False)
    assert (d.num_train, d.num_eval, d.eval_split) == (900, 100, "validation")
    train, validation = _hashes(d.train), _hashes(d.eval)
    assert len(train) == 900 and len(validation) == 100
    assert not train & validation
    labels = np.concatenate([y.numpy() for _, y in d.eval])
    assert len(set(labels)) == 10  # the held-out part is not one class: the folder order is shuffled


def test_holdout_is_a_second_block_apart_from_validation_and_training(mini_dataset):
    load = lambda split, **kw: data.load(  # noqa: E731
        mini_dataset, batch_size=1, eval_split=split, validation_split=0.1, augment=False, **kw
    )
    holdout, validation = load("holdout"), load("validation")
    assert (holdout.num_train, holdout.num_eval, holdout.eval_split) == (800, 100, "holdout")
    held, valid, train = _hashes(holdout.eval), _hashes(validation.eval), _hashes(holdout.train)
    assert len(held) == 100 and not held & valid and not held & train and not valid & train
    assert _hashes(load("holdout", train_limit=300).train) == _hashes(load("validation", train_limit=300).train)
    with pytest.raises(ConfigError, match=r"validation_split must be in \(0, 0.5\)"):
        data.load(mini_dataset, batch_size=1, eval_split="holdout", validation_split=0.5)


def test_train_limit(mini_dataset):
    d = data.load(mini_dataset, batch_size=10, train_limit=100)
    assert d.num_train == 100 and sum(1 for _ in d.train) == 10


def test_augmentation_crops_and_flips_but_keeps_shape():
    image = tf.reshape(tf.range(32 * 32 * 3, dtype=tf.float32), (32, 32, 3))
    outputs = [data.augment_cifar(image, tf.constant([0, s], tf.int64)) for s in range(8)]
    assert all(o.shape == (32, 32, 3) for o in outputs)
    assert len({o.numpy().tobytes() for o in outputs}) > 1
    again = data.augment_cifar(image, tf.constant([0, 3], tf.int64))
    np.testing.assert_array_equal(again, outputs[3])  # reproducible from the seed


def test_training_pipeline_is_reproducible_from_the_seed(mini_dataset):
    first = next(iter(data.load(mini_dataset, batch_size=16, seed=3).train))[0].numpy()
    second = next(iter(data.load(mini_dataset, batch_size=16, seed=3).train))[0].numpy()
    other = next(iter(data.load(mini_dataset, batch_size=16, seed=4).train))[0].numpy()
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize(
    "name,message",
    [
        ("imagenet_v2", "unknown dataset"),
        ("folder:/nonexistent/place", "no train/ subfolder"),
    ],
)
def test_unusable_datasets_are_config_errors(name, message):
    with pytest.raises(ConfigError, match=message):
        data.load(name, batch_size=8)


def test_folder_with_one_class(tmp_path, mini_dataset):
    source = sorted((pathlib.Path(mini_dataset[len("folder:") :]) / "train" / "cat").iterdir())[:3]
    (tmp_path / "train" / "cat").mkdir(parents=True)
    for path in source:
        (tmp_path / "train" / "cat" / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ConfigError, match="at least 2 class"):
        data.load(f"folder:{tmp_path}", batch_size=2)
