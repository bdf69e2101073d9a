"""A decoded copy of a folder dataset's split on disk, so that a run does not decode every image file again.

Decoding CIFAR-10's 50,000 JPEGs costs every new process about 15 CPU-seconds (a quick try pays for the
10,000 that fill the shuffle buffer before its first step and the 5,000 it validates on); the copy loads in
about a second. It holds one split exactly as `data.py`'s pipeline
decodes it (uint8 images brought to the training images' shape, int32 labels) in the folder dataset's
own order, so a run reads the same tensors in the same order from it as from the files.

One uncompressed `.npz` per folder and split in the cache folder (default `~/.cache/introspective_tf`,
`$XDG_CACHE_HOME` if set). It is used only if the key stored in it matches the folder now: every image's
path, class, size and modification time in the dataset's order, the image shape and the TensorFlow and
TFDS versions (which decode and order the files). A changed, added, removed or touched file rebuilds it;
so does a file that cannot be read whole (the zip format's CRC-32 is checked on every read). It is written
to a temporary file and renamed into place, so a killed run leaves the old copy or none, never half of one.
Delete the folder to clear it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
import zipfile
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from introspective_tf.errors import ConfigError
from introspective_tf.training import resume

FORMAT = 1  # raise when what the file holds or how the key is made changes
NONE = "none"  # --data_cache_dir=none: decode in every run
PROGRESS_SECONDS = 5.0  # a progress line at most this often while decoding


@dataclasses.dataclass(frozen=True)
class DecodedSplit:
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray  # int32 [N]


def default_dir() -> str:
    """~/.cache/introspective_tf, or $XDG_CACHE_HOME/introspective_tf: where per-user caches live."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "introspective_tf")


def resolve_dir(value: str | None) -> str | None:
    """The cache folder a `--data_cache_dir` value names: "" the default, "none" no cache (None)."""
    if value is None or value.strip().lower() == NONE:
        return None
    return os.path.expanduser(value) if value else default_dir()


def cache_path(cache_dir: str, root: str, split: str) -> str:
    """One file per folder and split; the folder's real path in the name keeps two folders apart."""
    real = os.path.realpath(root)
    tag = hashlib.sha256(real.encode()).hexdigest()[:12]
    return os.path.join(cache_dir, f"{os.path.basename(real) or 'folder'}-{tag}-{split}.npz")


def content_key(root: str, split: str, examples: Sequence[tuple[str, str]], image_shape: tuple[int, ...] | None) -> str:
    """sha256 of what the decoded split depends on; `examples` are (path, class) in the dataset's order."""
    digest = hashlib.sha256()
    digest.update(f"{FORMAT}|{tf.__version__}|{tfds.__version__}|{split}|{image_shape}\n".encode())
    prefix = os.path.join(root, "")
    for path, label in examples:
        stat = os.stat(path)
        relative = path[len(prefix) :] if path.startswith(prefix) else os.path.relpath(path, root)  # fast when it can
        digest.update(f"{relative}\t{label}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _read(path: str, key: str, labels: np.ndarray, image_shape: tuple[int, ...] | None) -> DecodedSplit | str:
    """The split stored at `path` if it is whole and made from the folder as it is now; else why not."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) != key:
                return "stale: the folder or the software changed since it was written"
            images, stored_labels = stored["images"], stored["labels"]  # reading checks each array's CRC-32
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        return f"unreadable ({type(err).__name__}: {err})"
    shape_ok = images.ndim == 4 and (image_shape is None or images.shape[1:] == tuple(image_shape))
    if not (images.dtype == np.uint8 and shape_ok and stored_labels.dtype == np.int32):
        return "unreadable (unexpected array types or shapes)"
    if len(images) != len(labels) or not np.array_equal(stored_labels, labels):
        return "unreadable (its labels are not the folder's)"
    return DecodedSplit(images, stored_labels)


def _decode_all(decoded: tf.data.Dataset, count: int, what: str) -> DecodedSplit:
    """Runs the decoding pipeline once over the split, with a progress line every few seconds."""
    start = last = time.monotonic()
    images: np.ndarray | None = None
    labels = np.empty((count,), np.int32)
    done = 0
    for image_batch, label_batch in decoded.batch(1024).as_numpy_iterator():
        if images is None:
            images = np.empty((count, *image_batch.shape[1:]), np.uint8)
        images[done : done + len(image_batch)] = image_batch
        labels[done : done + len(label_batch)] = label_batch
        done += len(image_batch)
        if time.monotonic() - last >= PROGRESS_SECONDS:
            last = time.monotonic()
            print(f"  {what}: {done}/{count} images decoded, {last - start:.0f} s", flush=True)
    if done != count or images is None:
        raise ConfigError(f"{what}: expected {count} images, decoded {done}; has the folder changed meanwhile?")
    return DecodedSplit(images, labels)


def _remove_leftovers(path: str, older_than: float = 3600.0) -> None:
    """Temporary files of writers that were killed (a live writer renames its own within seconds)."""
    directory, name = os.path.split(path)
    for entry in os.scandir(directory):
        if entry.name.startswith(".tmp-") and entry.name.endswith(f"-{name}"):
            with contextlib.suppress(OSError):
                if time.time() - entry.stat().st_mtime > older_than:
                    os.remove(entry.path)


def _write(path: str, key: str, split: DecodedSplit) -> None:
    """Temporary file, fsync, rename: readers see the previous file or the whole new one."""
    _remove_leftovers(path)
    with resume.replaced_atomically(path) as staging, open(staging, "wb") as f:
        np.savez(f, key=np.array(key), images=split.images, labels=split.labels)
        f.flush()
        os.fsync(f.fileno())


def load_split(
    cache_dir: str,
    root: str,
    split: str,
    examples: Sequence[tuple[str, str]],
    class_names: Sequence[str],
    image_shape: tuple[int, ...] | None,
    decode: Callable[[], tf.data.Dataset],
) -> DecodedSplit:
    """The decoded `split` of the folder dataset at `root`, read from the cache or decoded and cached.

    `examples` are the split's (path, class) in the dataset's order, `decode()` the pipeline that decodes
    them in that order (as data.py would), and `image_shape` the shape it brings them to (None for the
    training split, whose first image sets it).
    """
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.array([index[label] for _, label in examples], np.int32)
    path = cache_path(cache_dir, root, split)
    try:
        key = content_key(root, split, examples, image_shape)
    except OSError as err:  # a file went away since the folder was listed
        raise ConfigError(f"folder dataset '{root}' changed while it was read: {err}") from None
    found = _read(path, key, labels, image_shape)
    if isinstance(found, DecodedSplit):
        return found
    what = f"{os.path.join(root, split)}"
    reason = "" if found == "missing" else f" (the cached copy is {found})"
    print(f"decoding the {len(examples)} images of {what} once{reason}; they are kept in {path}", flush=True)
    start = time.monotonic()
    decoded = _decode_all(decode(), len(examples), what)
    if not np.array_equal(decoded.labels, labels):
        raise ConfigError(f"{what}: the decoded labels are not the folder's; has the folder changed meanwhile?")
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"data_cache_dir '{cache_dir}' is not usable: {err.strerror or err}") from None
    try:
        _write(path, key, decoded)
    except OSError as err:  # a full disk, say: the images are decoded, so this run needs no copy
        print(f"  could not write {path} ({err.strerror or err}); this run goes on without it", flush=True)
        return decoded
    megabytes = (decoded.images.nbytes + decoded.labels.nbytes) / 1e6
    seconds = time.monotonic() - start
    print(f"  {what}: {len(examples)} images decoded and cached ({megabytes:.0f} MB) in {seconds:.0f} s", flush=True)
    return decoded
