"""Input pipelines: TFDS datasets or an image folder, as batched `tf.data` of (float image, int label).

Images stay in pixel units [0, 255] as float32; the models normalise inside themselves, so an exported
model takes the same raw pixels a client has. Decoded images are cached in memory once (CIFAR-10 is
150 MB as uint8), so from the second epoch on the pipeline only shuffles, augments and batches. A folder
dataset can also be read from a decoded copy on disk (`cache_dir`, `folder_cache.py`): the same tensors in
the same order, without decoding every file in every process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket

import tensorflow as tf
import tensorflow_datasets as tfds

from introspective_tf.errors import ConfigError, option
from introspective_tf.training import folder_cache

TFDS_DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist", "svhn_cropped")
FOLDER_PREFIX = "folder:"
EVAL_SPLITS = ("test", "validation", "holdout")  # see `load`


class DatasetError(ConfigError):
    """A dataset that cannot be used as asked; the message says why and what to do."""


@dataclasses.dataclass
class Data:
    train: tf.data.Dataset
    eval: tf.data.Dataset
    eval_split: str  # "test" or "validation": which data `eval` holds
    num_classes: int
    image_shape: tuple[int, int, int]
    num_train: int
    num_eval: int
    class_names: list[str]


# Probed before a TFDS download: without network, TFDS retries for minutes before it gives up.
DOWNLOAD_PROBE = ("storage.googleapis.com", 443)


def _network_reachable(timeout: float = 5.0) -> bool:
    try:
        socket.create_connection(DOWNLOAD_PROBE, timeout=timeout).close()
        return True
    except OSError:
        return False


def _local_data_advice() -> str:
    return (
        f"point {option('data_dir', 'DIR')} at a prepared TFDS directory or use "
        f"{option('dataset', 'folder:ROOT')} (ROOT/train/CLASS/*.jpg)"
    )


def _load_tfds(name: str, data_dir: str | None):
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        if not builder.is_prepared() and not _network_reachable():
            raise DatasetError(
                f"TFDS dataset '{name}' is not prepared in {builder.data_dir} and there is no network to download "
                f"it: {_local_data_advice()}"
            )
        builder.download_and_prepare()
    except DatasetError:
        raise
    except Exception as err:  # TFDS raises many kinds of network and filesystem errors.
        raise DatasetError(
            f"could not load TFDS dataset '{name}' ({type(err).__name__}); without network access, "
            f"{_local_data_advice()}"
        ) from None
    return builder


def _load_folder(root: str):
    if not os.path.isdir(root):
        raise DatasetError(
            f"folder dataset '{root}' does not exist, so it has no train/ subfolder (expected ROOT/train/CLASS/*.jpg)"
        )
    if not os.path.isdir(os.path.join(root, "train")):
        raise DatasetError(f"folder dataset '{root}' has no train/ subfolder (expected ROOT/train/CLASS/*.jpg)")
    try:
        builder = tfds.folder_dataset.ImageFolder(root)
    except Exception as err:
        raise DatasetError(f"cannot read folder dataset '{root}': {err}") from None
    if builder.info.features["label"].num_classes < 2:
        raise DatasetError(f"folder dataset '{root}' needs at least 2 class folders under train/")
    if builder.info.splits["train"].num_examples == 0:
        raise DatasetError(f"folder dataset '{root}' has no .jpg/.jpeg/.png images under train/CLASS/")
    return builder


def unreadable_images(root: str) -> list[str]:
    """Image files under `root` that TensorFlow cannot decode (slow: decodes every file)."""
    bad = []
    for directory, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            if os.path.splitext(name)[1].lower() in (".jpg", ".jpeg", ".png"):
                path = os.path.join(directory, name)
                try:
                    tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
                except tf.errors.OpError:
                    bad.append(path)
    return bad


@contextlib.contextmanager
def naming_unreadable_images(dataset: str):
    """Turns the decode error of a corrupt file in a folder dataset into one line naming the files.

    Folder datasets are not checked up front (decoding 50,000 files costs seconds on every run): a
    corrupt or non-image file with an image extension stops the run at its first read, before any
    epoch is saved; only then is the folder scanned, to say which files to fix or remove.
    """
    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError):
        if dataset.startswith(FOLDER_PREFIX):
            bad = unreadable_images(dataset[len(FOLDER_PREFIX) :])
            if bad:
                shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
                raise DatasetError(f"{len(bad)} image file(s) cannot be decoded; fix or remove them: {shown}") from None
        raise


def load(
    dataset: str,
    *,
    batch_size: int,
    data_dir: str | None = None,
    eval_split: str = "test",
    validation_split: float = 0.1,
    train_limit: int = 0,
    seed: int = 0,
    augment: bool | None = None,
    example_index: bool = False,
    cache_dir: str | None = None,
) -> Data:
    """Builds the training and evaluation pipelines.

    `eval_split="test"` evaluates on the test split when the dataset has one; otherwise (or with
    `eval_split="validation"`) the last `validation_split` of the (deterministically shuffled) training
    split is held out and evaluated instead, and never trained on. `eval_split="holdout"` evaluates on
    a second block of that size just before the validation block, which is then neither trained on nor
    evaluated: where settings were chosen on the validation split, a comparison scored on the holdout
    does not reuse the images the choice was made on. `train_limit` > 0 keeps only that
    many training examples (for quick runs and sweeps). `example_index=True` makes training batches
    `((images, index), labels)`, `index` the example's position in [0, num_train) whatever the
    shuffle, for methods that keep per-example state (PS-KD); the order of examples is unchanged.
    `cache_dir` (folder datasets only): read the decoded images from a copy there, made by the first run
    that needs it (`folder_cache.py`); None decodes the files in this process. Either way the pipelines
    yield the same tensors in the same order.
    """
    if dataset.startswith(FOLDER_PREFIX):
        builder = _load_folder(dataset[len(FOLDER_PREFIX) :])
    elif dataset in TFDS_DATASETS:
        builder = _load_tfds(dataset, data_dir)
    else:
        raise DatasetError(f"unknown dataset '{dataset}': use one of {', '.join(TFDS_DATASETS)} or folder:ROOT")
    if eval_split not in EVAL_SPLITS:
        raise DatasetError(f"eval_split must be one of {', '.join(EVAL_SPLITS)}, not '{eval_split}'")

    splits = builder.info.splits
    num_all_train = splits["train"].num_examples
    use_holdout = eval_split == "holdout"
    use_validation = eval_split == "validation" or ("test" not in splits and not use_holdout)
    if use_validation and not 0.0 < validation_split < 1.0:
        raise DatasetError(f"validation_split must be in (0, 1) to hold out a validation split, not {validation_split}")
    if use_holdout and not 0.0 < validation_split < 0.5:
        raise DatasetError(
            f"validation_split must be in (0, 0.5) to hold out validation and holdout blocks, not {validation_split}"
        )
    num_val = int(round(num_all_train * validation_split)) if use_validation or use_holdout else 0
    num_holdout = num_val if use_holdout else 0
    num_train = num_all_train - num_val - num_holdout
    if train_limit > 0:
        num_train = min(num_train, train_limit)

    if use_holdout:
        eval_start, num_eval, split_name = num_all_train - num_val - num_holdout, num_holdout, "holdout"
    elif use_validation:
        eval_start, num_eval, split_name = num_all_train - num_val, num_val, "validation"
    else:
        eval_start, num_eval, split_name = 0, splits["test"].num_examples, "test"

    cached = dataset.startswith(FOLDER_PREFIX) and cache_dir is not None
    if cached:
        train, evaluation, image_shape = _from_folder_cache(
            builder,
            os.path.expanduser(dataset[len(FOLDER_PREFIX) :]),
            cache_dir,
            num_train,
            split_name,
            eval_start,
            num_eval,
        )
    else:
        all_train = builder.as_dataset(split="train", as_supervised=True, shuffle_files=False)
        train = all_train.take(num_train)
        if split_name == "test":
            evaluation = builder.as_dataset(split="test", as_supervised=True, shuffle_files=False)
        elif split_name == "holdout":
            evaluation = all_train.skip(eval_start).take(num_holdout)
        else:
            evaluation = all_train.skip(eval_start)
        image_shape = _image_shape(train)

    if augment is None:
        augment = image_shape[0] >= 24 and image_shape[-1] == 3  # flips and crops suit natural images only
    if cached:  # already decoded
        train = _train_batches(train, batch_size, seed, augment, example_index)
        evaluation = _eval_batches(evaluation, batch_size)
    else:
        train = _train_pipeline(train, image_shape, batch_size, seed, augment, example_index)
        evaluation = _eval_pipeline(evaluation, image_shape, batch_size)
    num_classes = builder.info.features["label"].num_classes
    return Data(
        train=train,
        eval=evaluation,
        eval_split=split_name,
        num_classes=num_classes,
        image_shape=image_shape,
        num_train=num_train,
        num_eval=num_eval,
        class_names=list(builder.info.features["label"].names),
    )


def _image_shape(ds: tf.data.Dataset) -> tuple[int, int, int]:
    for image, _ in ds.take(1):
        return tuple(int(d) for d in image.shape)
    raise DatasetError("the training split is empty")


def _from_folder_cache(builder, root: str, cache_dir: str, num_train: int, eval_name: str, eval_start: int, num_eval):
    """The decoded training and evaluation examples (and the image shape) of `load`, read from the
    folder cache: the slices of the cached splits that `load` takes from the decoded files otherwise."""
    examples = getattr(builder, "_split_examples", None)  # ImageFolder's (path, class) list, in its order
    if examples is None:
        raise DatasetError("this TFDS version's ImageFolder does not list its examples: use --data_cache_dir=none")
    class_names = builder.info.features["label"].names

    def split(name: str, image_shape):
        def decode():
            ds = builder.as_dataset(split=name, as_supervised=True, shuffle_files=False)
            return _fixed(ds, image_shape or _image_shape(ds))

        pairs = [(e.image_path, e.label) for e in examples[name]]
        return folder_cache.load_split(cache_dir, root, name, pairs, class_names, image_shape, decode)

    all_train = split("train", None)
    image_shape = tuple(int(d) for d in all_train.images.shape[1:])
    if num_train == 0:
        raise DatasetError("the training split is empty")
    held = split("test", image_shape) if eval_name == "test" else all_train
    train = tf.data.Dataset.from_tensor_slices((all_train.images[:num_train], all_train.labels[:num_train]))
    end = eval_start + num_eval
    evaluation = tf.data.Dataset.from_tensor_slices((held.images[eval_start:end], held.labels[eval_start:end]))
    return train, evaluation, image_shape


def _fixed(ds: tf.data.Dataset, image_shape) -> tf.data.Dataset:
    """uint8 images of one fixed shape, labels int32."""

    def fix(image, label):
        if image.shape.is_fully_defined() and tuple(image.shape) == image_shape:
            fixed = image
        else:  # folder datasets may mix sizes: bring every image to the first one's shape
            fixed = tf.image.resize(image, image_shape[:2], antialias=True)
            fixed = tf.cast(tf.clip_by_value(tf.round(fixed), 0, 255), tf.uint8)
            fixed = tf.ensure_shape(fixed, image_shape)
        return fixed, tf.cast(label, tf.int32)

    return ds.map(fix, num_parallel_calls=tf.data.AUTOTUNE)


def _decoded(ds: tf.data.Dataset, image_shape) -> tf.data.Dataset:
    """`_fixed`, cached in memory after the first pass."""
    return _fixed(ds, image_shape).cache()


def augment_cifar(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Standard CIFAR augmentation: pad 4 pixels (zeros), random crop back, random horizontal flip."""
    height, width, channels = image.shape
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    padded = tf.pad(image, [[4, 4], [4, 4], [0, 0]])
    image = tf.image.stateless_random_crop(padded, (height, width, channels), seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def _train_pipeline(ds, image_shape, batch_size, seed, augment, example_index=False) -> tf.data.Dataset:
    return _train_batches(_decoded(ds, image_shape), batch_size, seed, augment, example_index)


def _train_batches(ds, batch_size, seed, augment, example_index=False) -> tf.data.Dataset:
    """Shuffles, augments and batches decoded (uint8 image, int32 label) examples."""
    if example_index:  # numbered before the shuffle: the number names the example, not its position
        ds = ds.enumerate().map(lambda index, pair: (pair[0], pair[1], tf.cast(index, tf.int32)))
    else:
        ds = ds.map(lambda image, label: (image, label, tf.constant(-1, tf.int32)))
    ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    if augment:
        # One independent random stream per example, reproducible from --seed.
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))
        ds = ds.map(
            lambda example, s: (augment_cifar(example[0], s), *example[1:]), num_parallel_calls=tf.data.AUTOTUNE
        )

    def inputs_and_label(image, label, index):
        image = tf.cast(image, tf.float32)
        return ((image, index), label) if example_index else (image, label)

    ds = ds.map(inputs_and_label, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _eval_pipeline(ds, image_shape, batch_size) -> tf.data.Dataset:
    return _eval_batches(_decoded(ds, image_shape), batch_size)


def _eval_batches(ds, batch_size) -> tf.data.Dataset:
    ds = ds.map(lambda image, label: (tf.cast(image, tf.float32), label))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
