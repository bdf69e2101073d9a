"""Watching introspection learn in TensorBoard: a fixed batch of held-out images, their self-explanations
and the soft target made of them, drawn every few epochs while a run trains.

The scalar curves say how well a model fits; they do not show what introspective learning learns
*from*. This callback fixes a few held-out images before training (the first ones of the evaluation
split) and, after the first epoch, every `every`-th epoch and the last, writes to the run's
TensorBoard folder (`logs/explanations`; the step is the epoch index, as in Keras' own `epoch_*` scalars):

* `explanations/example_i` -- image i beside the explanation of its true class and of the two classes
  whose explanations are most similar to it, each titled with that similarity s and the target q;
* `soft_target/example_i` -- the soft target q of image i over all classes, with the prediction p;
* `target_true_mass` -- a histogram of q's mass on the true class over the batch (1 = the label).

For an introspective run these are the method's own explanation (kind, layer, similarity) and soft
target (tau or true-class mass, softmax or smoothing). Every other method gets what the default
introspective method would draw of its backbone (Grad-CAM at `last_conv_block`, tau 0.01), so a run of
standard training shows what introspection would have asked of the same network; so does
`pskd_explained`, whose own target needs the previous epoch's predictions of *training* images.

It only looks. Explanations are taken in inference mode (BatchNorm's moving statistics are read, not
updated), exactly (a JVP-estimating run shows the exact similarities its estimate approximates), no
random number is drawn and no metric is updated: a run trains bit-identically with or without it
(tested). Between logging epochs it does nothing.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from introspective_tf import methods, soft_targets
from introspective_tf.methods.introspective import Introspective, true_class_mass

NUM_EXAMPLES = 8  # images drawn per logging epoch
SIMILAR_CLASSES = 2  # classes shown beside the true class: those whose explanations are most like its
LOG_SUBDIR = "explanations"  # under the run's TensorBoard folder


def first_examples(dataset: tf.data.Dataset, count: int = NUM_EXAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` (images, labels) of a batched `(images, labels)` dataset, as numpy arrays: read
    once before training, so every logging epoch draws the same images.

    The dataset is read to its end: the evaluation pipeline caches its images in memory, and an
    iterator stopped early would discard that cache (with a TensorFlow warning); read whole, it fills
    the cache the first evaluation would fill anyway."""
    images, labels, taken = [], [], 0
    for batch_images, batch_labels in dataset:
        if taken < count:
            images.append(np.asarray(batch_images, np.float32)[: count - taken])
            labels.append(np.asarray(batch_labels, np.int32)[: count - taken])
            taken += len(labels[-1])
    if not images:
        raise ValueError("the dataset holds no examples to draw")
    return np.concatenate(images), np.concatenate(labels)


def explaining_method(method: keras.Model) -> Introspective:
    """The introspective method whose explanations and target are drawn: the run's own when it trains
    with introspection, otherwise the default one on the run's backbone (its variables are never used)."""
    return method if type(method) is Introspective else methods.build("introspective", method.backbone)


def explain_batch(method: Introspective, images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """What one logging epoch draws, as numpy arrays over B images and C classes: `maps` [B, C, h, w]
    (each class's explanation; input-gradient kinds as the largest absolute value over colour channels),
    `similarity`, `target` and `probabilities` [B, C], and `true_mass` [B] (the target's q_y)."""
    images = tf.convert_to_tensor(images, tf.float32)
    labels = tf.convert_to_tensor(labels, tf.int32)
    explained = tf.cast(method.explainer.explain(images, training=False), tf.float32)
    similarity = soft_targets.similarity_to_true_class(explained, labels, method.similarity)
    target = method.untracked_soft_target(similarity, labels)
    maps = explained if explained.shape.rank == 4 else tf.reduce_max(tf.abs(explained), axis=-1)
    logits = tf.cast(method.backbone(images, training=False), tf.float32)
    return {
        "maps": maps.numpy(),
        "similarity": similarity.numpy(),
        "target": target.numpy(),
        "true_mass": true_class_mass(target, labels).numpy(),
        "probabilities": tf.nn.softmax(logits, axis=-1).numpy(),
    }


def shown_classes(similarity: np.ndarray, label: int, count: int = SIMILAR_CLASSES) -> list[int]:
    """The true class, then the `count` other classes whose explanations are most similar to it."""
    order = [int(c) for c in np.argsort(-similarity, kind="stable") if c != label]
    return [int(label), *order[:count]]


def _rendered(figure) -> np.ndarray:
    """A matplotlib figure as a uint8 RGB array [height, width, 3]."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _name(class_names: list[str], c: int) -> str:
    return class_names[c] if c < len(class_names) else str(c)


def explanation_panel(
    image: np.ndarray,
    label: int,
    drawn: dict[str, np.ndarray],
    index: int,
    class_names: list[str],
) -> np.ndarray:
    """One image [H, W, 3] uint8: example `index` beside its true class's explanation and those of the
    classes most similar to it, each map scaled to [0, 1] and laid over the image in grey."""
    from matplotlib.figure import Figure

    similarity, target = drawn["similarity"][index], drawn["target"][index]
    probabilities = drawn["probabilities"][index]
    classes = shown_classes(similarity, label)
    height, width = image.shape[:2]
    extent = (0, width, height, 0)
    shown_image = np.clip(image, 0, 255).astype(np.uint8)
    grey = shown_image.mean(axis=-1) if shown_image.shape[-1] == 3 else shown_image[..., 0]

    figure = Figure(figsize=(1.75 * (1 + len(classes)), 2.1), dpi=80)  # fixed margins: an automatic layout is slow
    axes = figure.subplots(
        1, 1 + len(classes), gridspec_kw=dict(left=0.01, right=0.99, bottom=0.02, top=0.8, wspace=0.06)
    )
    predicted = int(np.argmax(probabilities))
    axes[0].imshow(shown_image.squeeze(), cmap="gray" if shown_image.shape[-1] == 1 else None, extent=extent)
    axes[0].set_title(
        f"true: {_name(class_names, label)}\npredicted: {_name(class_names, predicted)} {probabilities[predicted]:.2f}",
        fontsize=8,
    )
    for axis, c in zip(axes[1:], classes):
        explanation = drawn["maps"][index, c]
        peak = float(explanation.max())
        axis.imshow(grey, cmap="gray", vmin=0, vmax=255, extent=extent)
        axis.imshow(
            explanation / peak if peak > 0 else np.zeros_like(explanation),
            cmap="jet",
            alpha=0.5,
            vmin=0,
            vmax=1,
            extent=extent,
            interpolation="bilinear",
        )
        role = " (true)" if c == label else ""
        axis.set_title(f"{_name(class_names, c)}{role}\ns={similarity[c]:.2f} q={target[c]:.3g}", fontsize=8)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    return _rendered(figure)


def soft_target_chart(label: int, drawn: dict[str, np.ndarray], index: int, class_names: list[str]) -> np.ndarray:
    """One image [H, W, 3] uint8: the soft target q of example `index` over every class (the true class
    named in red) beside the prediction p, on a log axis from 1e-4 -- a target close to the label puts
    little mass on the other classes, and where that little goes is what it teaches."""
    from matplotlib.figure import Figure

    target, probabilities = drawn["target"][index], drawn["probabilities"][index]
    num_classes = len(target)
    positions = np.arange(num_classes)
    decades = 4  # the axis spans 1e-4 .. 1
    figure = Figure(figsize=(max(4.5, 0.45 * min(num_classes, 40)), 2.4), dpi=80)  # fixed margins: fast
    axis = figure.subplots(gridspec_kw=dict(left=0.1, right=0.98, bottom=0.3, top=0.88))

    def height(mass):  # bars of log10(mass / 1e-4) on a linear axis: a log scale's ticks are slow to lay out
        return np.log10(np.maximum(mass, 10.0**-decades)) + decades

    axis.bar(positions - 0.2, height(target), width=0.4, color="tab:blue", label="target q")
    axis.bar(positions + 0.2, height(probabilities), width=0.4, color="0.65", label="prediction p")
    axis.set_ylim(0, decades + 0.3)
    axis.set_yticks(
        range(decades + 1),
        [f"1e-{decades - k}" if k < decades - 1 else f"{10.0 ** (k - decades):g}" for k in range(decades + 1)],
    )
    shown = range(num_classes) if num_classes <= 20 else [label]  # 100 names would not be legible
    axis.set_xticks(list(shown), [_name(class_names, c) for c in shown], rotation=45, ha="right", fontsize=7)
    for tick, c in zip(axis.get_xticklabels(), shown):
        if c == label:
            tick.set_color("tab:red")
    axis.tick_params(axis="y", labelsize=7)
    axis.set_title(f"{_name(class_names, label)}: q on the true class {target[label]:.4f}", fontsize=8, loc="left")
    axis.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, frameon=False, borderaxespad=0)
    return _rendered(figure)


class ExplanationImages(keras.callbacks.Callback):
    """Logs the explanations and soft targets of a fixed batch of held-out images to TensorBoard after
    the first epoch, every `every`-th epoch and the last (module docstring)."""

    def __init__(
        self,
        method: keras.Model,
        images: np.ndarray,
        labels: np.ndarray,
        class_names: list[str],
        log_dir: str,
        every: int,
    ):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, not {every}")
        self.introspective = explaining_method(method)
        self.images, self.labels = np.asarray(images, np.float32), np.asarray(labels, np.int32)
        self.class_names, self.log_dir, self.every = list(class_names), log_dir, every
        self._writer = None

    def logs_after(self, epoch: int) -> bool:
        """Whether epoch `epoch` (0-based) is drawn: the first, every `every`-th and the last."""
        return epoch % self.every == 0 or epoch == self.params.get("epochs", 0) - 1

    def on_epoch_end(self, epoch, logs=None):
        if not self.logs_after(epoch):
            return
        self.write(epoch)

    def write(self, step: int) -> None:
        """Draws the fixed batch with the current weights and writes it at TensorBoard step `step`."""
        drawn = explain_batch(self.introspective, self.images, self.labels)
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for i, (image, label) in enumerate(zip(self.images, self.labels)):
                panel = explanation_panel(image, int(label), drawn, i, self.class_names)
                chart = soft_target_chart(int(label), drawn, i, self.class_names)
                tf.summary.image(f"explanations/example_{i}", panel[np.newaxis], step=step)
                tf.summary.image(f"soft_target/example_{i}", chart[np.newaxis], step=step)
            tf.summary.histogram(
                "target_true_mass",
                drawn["true_mass"],
                step=step,
                description="The soft target's mass on the true class over the fixed held-out batch (1 = the label).",
            )
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
