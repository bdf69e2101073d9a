"""Pictures of self-explanations and of the soft targets introspective learning derives from them.

For each image one figure row: the image; the explanation of the true class and of the classes the
model ranks highest among the others (tf-keras-vis `Saliency`, `Gradcam` or SmoothGrad), with a colour
bar; and a bar chart of the soft target q next to the model's prediction p. A caption under the rows
says what p and q are. The maps are for looking; q is computed
by the introspective method itself (the chosen explanation, in inference mode), so
the bars show what the method would learn from on these images.

Models are loaded from what this project writes: a `model.keras` file, a run folder (holds one), or
a SavedModel export (holds one in `assets.extra/`, since Grad-CAM needs the Keras layers).
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from introspective_tf import export, methods
from introspective_tf.errors import ConfigError

EXPLAINERS = ("saliency", "gradcam", "smoothgrad")
_TARGET = methods.resolve("introspective")  # the soft target as introspective training makes it by default
GRADCAM_LAYER = "last_conv_block"  # every backbone of models.py names its last block so


def keras_model_path(path: str) -> str:
    """The `.keras` file behind `path`: the file itself, a run folder's, or an export's."""
    candidates = (
        [path]
        if path.endswith(".keras")
        else [
            os.path.join(path, export.KERAS_MODEL),
            os.path.join(path, "assets.extra", export.KERAS_MODEL),
        ]
    )
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise ConfigError(
            f"export '{path}' has no assets.extra/{export.KERAS_MODEL} (exported by an older "
            "version): pass the run folder's model.keras instead, or export again"
        )
    raise ConfigError(f"no Keras model at '{path}': pass a model.keras file, a run folder or a SavedModel export")


def load_classifier(path: str) -> keras.Model:
    """The backbone classifier (float pixels [0, 255] -> logits) saved at `path`."""
    model_file = keras_model_path(path)
    try:
        return keras.models.load_model(model_file, compile=False)
    except Exception as err:  # Keras raises many types for unreadable or foreign files.
        raise ConfigError(
            f"cannot load Keras model '{model_file}': {type(err).__name__}: {err}".splitlines()[0]
        ) from None


@dataclasses.dataclass
class Explained:
    """Everything one figure shows, as numpy arrays over a batch of B images and C classes."""

    images: np.ndarray  # [B, H, W, C] pixels [0, 255]
    labels: np.ndarray  # [B]
    probabilities: np.ndarray  # [B, classes] the model's prediction p
    soft_target: np.ndarray  # [B, classes] q from the self-explanations
    similarity: np.ndarray  # [B, classes] similarity of each class's explanation to the true class's (cosine)
    shown_classes: np.ndarray  # [B, 1 + competitors]: the true class, then the top other predicted classes
    maps: np.ndarray  # [B, 1 + competitors, H, W] explanation maps in [0, 1]


def soft_target_and_prediction(
    model: keras.Model,
    images,
    labels,
    *,
    similarity_temperature: float = _TARGET["similarity_temperature"],
    soft_target: str = _TARGET["soft_target"],
    epsilon: float = _TARGET["epsilon"],
    explanation: str = _TARGET["explanation"],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q, p, s) for a batch: q and s by the introspective method itself (its explainer, similarity and
    soft target, explaining a separate inference-mode pass), p the model's prediction."""
    settings = dict(similarity_temperature=similarity_temperature, soft_target=soft_target, epsilon=epsilon)
    settings.update(explanation=explanation, explanation_mode="inference")
    trainer = methods.build("introspective", model, settings)
    images = tf.convert_to_tensor(images, tf.float32)
    labels = tf.convert_to_tensor(labels, tf.int32)
    similarity = trainer.similarity_to_true_class(images, labels)
    target = trainer.soft_target_from_similarity(similarity, labels)
    probabilities = tf.nn.softmax(model(images, training=False), axis=-1)
    return target.numpy(), probabilities.numpy(), similarity.numpy()


def explanation_maps(
    model: keras.Model, images, classes, explainer: str = "saliency", smooth_samples: int = 20
) -> np.ndarray:
    """tf-keras-vis maps [B, K, H, W] in [0, 1] for class `classes[i, k]` of image i."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.scores import CategoricalScore

    if explainer not in EXPLAINERS:
        raise ConfigError(f"unknown explainer '{explainer}': use one of {', '.join(EXPLAINERS)}")
    images = tf.convert_to_tensor(images, tf.float32)
    classes = np.asarray(classes)
    if explainer == "gradcam":
        try:
            model.get_layer(GRADCAM_LAYER)
        except ValueError:
            raise ConfigError(f"Grad-CAM needs a layer named '{GRADCAM_LAYER}' in the model") from None
        visualizer, kwargs = Gradcam(model, clone=False), {"penultimate_layer": GRADCAM_LAYER}
    else:
        visualizer = Saliency(model, clone=False)
        kwargs = {"smooth_samples": smooth_samples} if explainer == "smoothgrad" else {}
    with warnings.catch_warnings():
        # tf-keras-vis calls the model on a list of its inputs; Keras warns that a list of one tensor is
        # not the single input the model declares, and then uses it as that input.
        warnings.filterwarnings("ignore", message=r"The structure of `inputs` doesn't match", category=UserWarning)
        maps = [
            np.asarray(visualizer(CategoricalScore(list(classes[:, k])), images, **kwargs))
            for k in range(classes.shape[1])
        ]
    maps = np.stack(maps, axis=1).reshape(classes.shape + tuple(images.shape[1:3]))
    return np.nan_to_num(maps)  # a constant map normalises to NaN in tf-keras-vis


def explain(
    model: keras.Model,
    images,
    labels,
    *,
    explainer: str = "saliency",
    competitors: int = 2,
    smooth_samples: int = 20,
    similarity_temperature: float = _TARGET["similarity_temperature"],
    soft_target: str = _TARGET["soft_target"],
    epsilon: float = _TARGET["epsilon"],
    explanation: str = _TARGET["explanation"],
) -> Explained:
    """Computes everything `plot` draws for a batch of images with their true labels."""
    images, labels = np.asarray(images, np.float32), np.asarray(labels, np.int64)
    num_classes = int(model.output_shape[-1])
    if tuple(images.shape[1:]) != tuple(model.input_shape[1:]):
        raise ConfigError(f"images of shape {images.shape[1:]} do not fit the model's input {model.input_shape[1:]}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(f"labels must be in [0, {num_classes}) for this model, got {labels.min()}..{labels.max()}")
    if not 0 <= competitors < num_classes:
        raise ConfigError(f"competitors must be in [0, {num_classes - 1}], not {competitors}")
    target, probabilities, similarity = soft_target_and_prediction(
        model,
        images,
        labels,
        similarity_temperature=similarity_temperature,
        soft_target=soft_target,
        epsilon=epsilon,
        explanation=explanation,
    )
    others = np.where(np.eye(num_classes, dtype=bool)[labels], -np.inf, probabilities)
    shown = np.concatenate([labels[:, None], np.argsort(-others, axis=1)[:, :competitors]], axis=1)
    maps = explanation_maps(model, images, shown, explainer, smooth_samples)
    return Explained(images, labels, probabilities, target, similarity, shown, maps)


EXPLAINER_NAMES = {"saliency": "Saliency", "gradcam": "Grad-CAM", "smoothgrad": "SmoothGrad"}

CAPTION = (
    "p (blue bars): the model's prediction, its softmax probabilities.   q (orange bars): the soft target "
    "introspective learning trains towards, made from the model's self-explanations: the more a class's "
    "explanation resembles the true class's, the more of q that class gets.   Maps: each scaled to [0, 1]."
)


def plot(
    explained: Explained,
    class_names: list[str],
    path: str,
    *,
    explainer: str = "saliency",
    max_bars: int = 10,
    title: str = "",
    caption: str = CAPTION,
) -> str:
    """Writes `figure(...)` as PNG; returns the path."""
    import matplotlib.pyplot as plt

    fig = figure(explained, class_names, explainer=explainer, max_bars=max_bars, title=title, caption=caption)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def figure(
    explained: Explained,
    class_names: list[str],
    *,
    explainer: str = "saliency",
    max_bars: int = 10,
    title: str = "",
    caption: str = CAPTION,
):
    """The figure: a title, one row per image (the image, the maps with a colour bar, the q-versus-p bar
    chart), and a caption saying what p and q are. Close it with `matplotlib.pyplot.close`."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, maps_per_row = explained.shown_classes.shape
    width = 1.7 * (1 + maps_per_row) + 0.5 + 3.6
    # Constrained layout places the title, the caption (as the figure's x label) and the colour bars
    # without overlapping the panels and their titles, whatever the number of rows.
    fig = plt.figure(figsize=(width, 2.1 * rows + 1.3), layout="constrained")
    grid = fig.add_gridspec(rows, 2 + maps_per_row, width_ratios=[1] * (1 + maps_per_row) + [2.4])
    for i in range(rows):
        image = np.clip(explained.images[i], 0, 255).astype(np.uint8)
        label = int(explained.labels[i])
        predicted = int(explained.probabilities[i].argmax())
        axis = fig.add_subplot(grid[i, 0])
        axis.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None, interpolation="nearest")
        verdict = "right" if predicted == label else f"predicted {class_names[predicted]}"
        axis.set_title(
            f"{class_names[label]}\n({verdict})", fontsize=9, color="black" if predicted == label else "tab:red"
        )
        axis.axis("off")
        gray = image.mean(axis=-1)
        map_axes = []
        for k in range(maps_per_row):
            c = int(explained.shown_classes[i, k])
            axis = fig.add_subplot(grid[i, 1 + k])
            axis.imshow(gray, cmap="gray", interpolation="bilinear")
            heat = axis.imshow(explained.maps[i, k], cmap="jet", alpha=0.55, vmin=0, vmax=1, interpolation="bilinear")
            head = "true" if k == 0 else f"rival {k}"
            axis.set_title(
                f"{head}: {class_names[c]}\np={explained.probabilities[i, c]:.2f} q={explained.soft_target[i, c]:.2f}",
                fontsize=8,
            )
            axis.axis("off")
            map_axes.append(axis)
        bar = fig.colorbar(heat, ax=map_axes, location="right", shrink=0.8, aspect=12, pad=0.02)  # one scale per row
        bar.set_ticks([0, 0.5, 1])
        bar.ax.tick_params(labelsize=7)
        _bars(fig.add_subplot(grid[i, -1]), explained, i, class_names, max_bars, legend=i == 0)
    name = EXPLAINER_NAMES.get(explainer, explainer)
    fig.suptitle(title or f"{name} explanations of the true class and the classes the model ranks next", fontsize=11)
    if caption:
        fig.supxlabel(
            "\n".join(textwrap.wrap(caption, width=int(width * 13), break_on_hyphens=False)),
            fontsize=9,
            ha="left",
            x=0.01,
            multialignment="left",
        )
    return fig


def _bars(axis, explained: Explained, i: int, class_names: list[str], max_bars: int, legend: bool) -> None:
    """q and p side by side for the classes that matter most to either (all, for up to max_bars classes)."""
    q, p, label = explained.soft_target[i], explained.probabilities[i], int(explained.labels[i])
    order = np.argsort(-(q + p))[:max_bars]
    x = np.arange(len(order))
    axis.bar(x - 0.2, q[order], width=0.4, color="tab:orange", label="soft target q")
    axis.bar(x + 0.2, p[order], width=0.4, color="tab:blue", label="prediction p")
    axis.set_xticks(x, [class_names[c] for c in order], rotation=60, fontsize=7, ha="right", rotation_mode="anchor")
    for tick, c in zip(axis.get_xticklabels(), order):
        if c == label:
            tick.set_fontweight("bold")
            tick.set_color("tab:green")
    axis.set_ylim(0, 1)
    axis.tick_params(axis="y", labelsize=7)
    if legend:
        axis.legend(fontsize=7, loc="upper right")
