r"""A small serving client: classifies image files with an exported model, nothing but TensorFlow.

    python -m introspective_tf.tools.serving --model_path=saved_models/NAME cat.jpg ship.png
    python -m introspective_tf.tools.serving --model_path=saved_models/NAME --top_k=3 batch.npy

It loads the SavedModel with `tf.saved_model.load` (no Keras, no project code needed on a server),
reads the `serving_default` signature's input spec, and checks every input against it before
running: an image that does not fit gets a one-line message, not a TensorFlow traceback. Inputs are
image files (JPEG/PNG/BMP/GIF, decoded to pixels [0, 255]) or `.npy` arrays ([H, W, C] or
[N, H, W, C]) in pixel units. Class names come from the export's `assets.extra/class_names.json`.
"""

from __future__ import annotations

import os
import sys
import warnings

# `python -m introspective_tf.tools.serving` imports the package first, and the package's __init__ imports
# this module (as `introspective_tf.tools.serving`) before runpy executes it again as __main__; runpy then
# warns that two copies may behave unpredictably. The __main__ copy below only hands over to the
# package's copy, so there is one set of classes and functions; the warning says nothing here.
# (Importing the tools lazily in the package's __init__ would avoid the double import itself, but that
# file is part of the training-code hash, see provenance.py.)
warnings.filterwarnings(
    "ignore",
    message=r"'introspective_tf\.serving' found in sys\.modules after import of package",
    category=RuntimeWarning,
)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from introspective_tf import export  # noqa: E402
from introspective_tf.errors import ConfigError  # noqa: E402


class Classifier:
    """An exported classifier and what its signature promises: input spec and class names."""

    def __init__(self, model_path: str):
        if not os.path.isfile(os.path.join(model_path, "saved_model.pb")):
            raise ConfigError(f"'{model_path}' is not a SavedModel folder (no saved_model.pb)")
        try:
            loaded = tf.saved_model.load(model_path)
        except Exception as err:  # corrupt or foreign files raise many types
            raise ConfigError(f"cannot load SavedModel '{model_path}': {type(err).__name__}") from None
        if export.SIGNATURE not in loaded.signatures:
            raise ConfigError(
                f"'{model_path}' has no '{export.SIGNATURE}' signature (has: {', '.join(loaded.signatures)})"
            )
        self._loaded = loaded  # keeps the signature's variables alive
        self.signature = loaded.signatures[export.SIGNATURE]
        specs = self.signature.structured_input_signature[1]
        if len(specs) != 1:
            raise ConfigError(f"expected one input in '{export.SIGNATURE}', found {', '.join(specs)}")
        ((self.input_name, self.spec),) = specs.items()
        self.image_shape = tuple(self.spec.shape[1:])
        num_classes = int(self.signature.structured_outputs[export.OUTPUT_NAME].shape[-1])
        self.class_names = export.load_class_names(model_path) or [f"class {c}" for c in range(num_classes)]

    def check(self, images: np.ndarray, source: str) -> np.ndarray:
        """`images` as the signature's dtype, or a ConfigError that says what does not fit."""
        if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
            raise ConfigError(
                f"{source}: dtype {images.dtype} is not pixel values; the model takes "
                f"{self.spec.dtype.name} pixels in [0, 255]"
            )
        if np.issubdtype(images.dtype, np.floating) and not np.isfinite(images).all():
            bad = int(np.size(images) - np.isfinite(images).sum())
            raise ConfigError(
                f"{source}: {bad} pixel value{'s are' if bad > 1 else ' is'} not finite (NaN or inf); "
                f"the model takes {self.spec.dtype.name} pixels in [0, 255]"
            )
        if images.ndim != len(self.spec.shape) or not self.spec.shape[1:].is_compatible_with(images.shape[1:]):
            raise ConfigError(
                f"{source}: shape {list(images.shape[1:])} does not fit the model's input "
                f"{list(self.image_shape)} (height, width, channels); use --resize for image files"
            )
        return images.astype(self.spec.dtype.as_numpy_dtype)

    def read(self, path: str, resize: bool = False) -> np.ndarray:
        """A batch [N, H, W, C] from an image file (N = 1) or a .npy array, checked against the signature."""
        if not os.path.isfile(path):
            raise ConfigError(f"no such file: '{path}'")
        if path.endswith(".npy"):
            try:
                array = np.load(path, allow_pickle=False)
            except ValueError as err:
                raise ConfigError(f"{path}: not a plain .npy array ({err})") from None
            return self.check(array[None] if array.ndim == len(self.spec.shape) - 1 else array, path)
        try:
            image = tf.io.decode_image(tf.io.read_file(path), expand_animations=False).numpy()
        except tf.errors.InvalidArgumentError:
            raise ConfigError(
                f"{path}: not an image TensorFlow can decode (JPEG, PNG, BMP, GIF) or a .npy array"
            ) from None
        if resize and image.shape[:2] != self.image_shape[:2] and None not in self.image_shape[:2]:
            image = tf.image.resize(image, self.image_shape[:2], antialias=True).numpy()
        return self.check(image[None], path)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return self.signature(**{self.input_name: tf.constant(images)})[export.OUTPUT_NAME].numpy()

    def classify(
        self, paths: list[str], top_k: int = 1, resize: bool = False
    ) -> list[tuple[str, list[tuple[str, float]]]]:
        """(source, [(class name, probability)] best first) per image; all inputs are checked before any runs."""
        batches = [(path, self.read(path, resize)) for path in paths]
        top_k = max(1, min(top_k, len(self.class_names)))
        results = []
        for path, images in batches:
            for i, row in enumerate(self.probabilities(images)):
                source = path if len(images) == 1 else f"{path}[{i}]"
                results.append((source, [(self.class_names[c], float(row[c])) for c in np.argsort(-row)[:top_k]]))
        return results


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("model_path", None, "SavedModel export of this project.", required=True)
    flags.DEFINE_integer("top_k", 1, "Classes printed per image, most probable first.")
    flags.DEFINE_bool("resize", False, "Resize image files to the model's height and width instead of refusing them.")


def main(argv: list[str]) -> None:
    from absl import flags

    flags_ = flags.FLAGS
    if not argv[1:]:
        sys.exit("error: give one or more image files (or .npy arrays) to classify")
    try:
        classifier = Classifier(flags_.model_path)
        for source, ranked in classifier.classify(argv[1:], flags_.top_k, flags_.resize):
            print(f"{source}: " + ", ".join(f"{name} {probability:.3f}" for name, probability in ranked))
    except ConfigError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    from absl import app

    # Run the copy the package imported (see the note on the warning filter at the top).
    from introspective_tf.tools import serving as _serving

    _serving.define_flags()
    app.run(_serving.main)
