r"""Does the self-explanation soft target carry the class similarity a trained teacher's does?

    python -m introspective_tf.tools.target_content --model_path=runs/RUN/model.keras \
        --teacher=runs/TEACHER/model.keras --dataset=folder:../shared/data/cifar10 \
        --output=results/target_content/RUN.json --figure=docs/figures/target_content.png

Knowledge distillation works through the *wrong-class* part of the teacher's distribution: for a
cat, a good teacher puts more mass on dog than on truck. Introspective learning replaces the teacher
by the similarity of the model's own explanations; this tool asks whether that soft target ranks the
wrong classes as the teacher does. On N held-out images of a trained model (`--images=training`: N of
the training images it and the teacher saw, unaugmented):

* q_intro [N, C]: the introspective soft target, by `Introspective.targets` itself (the hparams given
  by flags, explaining a separate inference-mode pass: the analysed model is trained, not training);
  `--method=pskd_explained`: that method's target as in its last epoch (`self_target_fn`);
* p_teacher [N, C] = softmax(teacher logits / T);
* per true class y, the class mean of each example's non-ground-truth part renormalised over the C-1
  other classes: C x C matrices M_intro and M_teacher (rows sum to 1, diagonal NaN), and likewise
  M_confusion from the analysed model's own mistakes (argmax of its logits);
* per class, the Spearman rank correlation of row y of two matrices over the C-1 other classes,
  and its mean over classes.

Output: a JSON file with all of it, a PNG figure (the three matrices and the per-class correlation),
`markdown_table(result)` (per class) and `models_summary` (a row per analysed model, for
docs/target_content.md, which `report` fills in).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from introspective_tf import methods
from introspective_tf import teacher as teacher_lib
from introspective_tf.errors import ConfigError
from introspective_tf.methods import pskd_explained
from introspective_tf.tools import tables, visualize
from introspective_tf.training import data as data_lib
from introspective_tf.training import provenance, resume, run_flags

FLAGS = flags.FLAGS

PAIRS = {  # key -> (first matrix, second matrix); the correlations this tool reports
    "intro_vs_teacher": ("intro", "teacher"),
    "intro_vs_confusion": ("intro", "confusion"),
    "teacher_vs_confusion": ("teacher", "confusion"),
}
# The self-explanation targets this tool analyses (pskd_explained: PS-KD's true-class mass, its wrong classes
# spread by explanation similarity).
TARGET_METHODS = ("introspective", "pskd_explained")
# The soft target's hyper-parameters this tool takes as flags (the rest keep the method's defaults).
TARGET_HPARAMS = (
    "alpha",
    "similarity_temperature",
    "soft_target",
    "epsilon",
    "explanation",
    "explanation_layer",
    "similarity",
    "target_true_mass",
    "target_mass_scope",
)


# ----------------------------------------------------------------------------------------------- maths


def non_gt_class_means(probabilities: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """[C, C]: row y is the mean, over the examples of true class y, of each example's distribution
    restricted to the other classes and renormalised to sum to 1; the diagonal is NaN.

    The true class's mass says how peaked a target is, not which wrong classes it thinks alike; each
    example is renormalised *before* averaging so that every example weighs the same whatever its
    true-class mass (a near one-hot target would otherwise count almost nothing). Examples with no
    mass off the true class carry no ranking and are left out; a class without any usable example
    gives a NaN row.
    """
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels, np.int64)
    if probabilities.ndim != 2 or probabilities.shape != (len(labels), num_classes):
        raise ValueError(
            f"probabilities must be [N, {num_classes}] with N = {len(labels)} labels, not {probabilities.shape}"
        )
    true = np.eye(num_classes, dtype=bool)[labels]
    off_true = np.where(true, 0.0, probabilities)
    mass = off_true.sum(axis=1, keepdims=True)
    usable = mass[:, 0] > 0
    renormalised = off_true[usable] / mass[usable]
    sums = np.zeros((num_classes, num_classes))
    np.add.at(sums, labels[usable], renormalised)
    counts = np.bincount(labels[usable], minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    np.fill_diagonal(means, np.nan)
    return means


def confusion_non_gt(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """[C, C]: row y is how the model's mistakes on true class y spread over the other classes
    (counts of predicting c != y, renormalised to sum to 1); diagonal NaN, a row with no mistake NaN.

    It is the same object as `non_gt_class_means` of one-hot predictions, and the plainest reference
    for which classes the model itself finds alike.
    """
    predictions = np.asarray(predictions, np.int64)
    labels = np.asarray(labels, np.int64)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} differ in shape")
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (labels, predictions), 1.0)
    np.fill_diagonal(counts, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rows = counts / counts.sum(axis=1, keepdims=True)
    np.fill_diagonal(rows, np.nan)
    return rows


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span (as scipy.stats.rankdata)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.r_[starts[1:], len(values)]  # exclusive
    ranks = np.empty(len(values))
    ranks[order] = ((starts + ends - 1) / 2.0 + 1.0)[group]
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation: the Pearson correlation of the (tie-averaged) ranks.

    Ranks, not values: two distributions at different temperatures (a teacher at T = 4, a target at
    tau = 0.05) can only be compared on their order. Positions where either value is not finite are
    dropped; NaN when fewer than two remain or either side is constant (no order to compare).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"spearman needs two 1-D arrays of one length, not {a.shape} and {b.shape}")
    finite = np.isfinite(a) & np.isfinite(b)
    if finite.sum() < 2:
        return float("nan")
    ra, rb = _average_ranks(a[finite]), _average_ranks(b[finite])
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    if denominator == 0:
        return float("nan")
    return float(np.clip((ra * rb).sum() / denominator, -1.0, 1.0))


def row_rank_correlations(m1: np.ndarray, m2: np.ndarray) -> np.ndarray:
    """[C]: `spearman` of row y of two C x C matrices over the C-1 classes c != y (the diagonal,
    the true class, is what both rows leave out by construction)."""
    m1, m2 = np.asarray(m1, np.float64), np.asarray(m2, np.float64)
    if m1.shape != m2.shape or m1.ndim != 2 or m1.shape[0] != m1.shape[1]:
        raise ValueError(f"row_rank_correlations needs two square matrices of one shape, not {m1.shape} and {m2.shape}")
    off_diagonal = ~np.eye(len(m1), dtype=bool)
    return np.array([spearman(m1[y, off_diagonal[y]], m2[y, off_diagonal[y]]) for y in range(len(m1))])


def _nanmean(values: np.ndarray) -> float:
    finite = np.asarray(values, np.float64)[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


# ------------------------------------------------------------------------------------------- analysis


def target_hparams(overrides: dict[str, Any] | None = None, method: str = "introspective") -> dict[str, Any]:
    """`method`'s defaults with `overrides`, explaining a separate inference pass (the analysed model
    is trained: its BatchNorm statistics must be used, not moved)."""
    if method not in TARGET_METHODS:
        raise ConfigError(f"target_content analyses the target of {' or '.join(TARGET_METHODS)}, not '{method}'")
    hparams = methods.resolve(method, overrides)
    hparams["explanation_mode"] = "inference"
    return hparams


def self_target_fn(method: str, model: keras.Model, hparams: dict[str, Any]) -> Callable:
    """(images, labels) -> q [B, C], the self-explanation target `method` trains with, from the code path
    training uses. For `pskd_explained`, as in its last epoch: the true class gets (1 - alpha) + alpha p(y | x)
    (a_T = alpha), p from the analysed model's own inference-mode prediction on the image as given (training
    stores its augmented training-mode prediction of the epoch before), the rest spread by its explanations."""
    trainer = methods.build(method, model, hparams)
    if method == "introspective":
        return tf.function(trainer.targets)
    alpha = float(hparams["alpha"])

    @tf.function
    def explained_progressive(images, labels):
        probabilities = tf.nn.softmax(model(images, training=False), axis=-1)
        true_probability = tf.gather(probabilities, labels, axis=1, batch_dims=1)
        true_mass = (1.0 - alpha) + alpha * true_probability
        return pskd_explained.explained_progressive_target(labels, true_mass, trainer.targets(images, labels))

    return explained_progressive


def analyse(
    model: keras.Model,
    teacher: Callable[[tf.Tensor], tf.Tensor],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    hparams: dict[str, Any] | None = None,
    method: str = "introspective",
    teacher_temperature: float = 4.0,
    batch_size: int = 128,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The matrices, per-class rank correlations and their means for `model` and `teacher`
    (images [N, H, W, C] in [0, 255] -> logits [N, C]) on these images.

    q_intro is `method`'s self-explanation target (`self_target_fn`: the code path training uses);
    `hparams` override the method's defaults (see `target_hparams`). Arrays in the result are numpy
    (NaN where undefined); `to_json` makes it JSON.
    """
    if teacher_temperature <= 0:
        raise ConfigError(f"teacher_temperature must be > 0, not {teacher_temperature}")
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be > 0, not {batch_size}")
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels, np.int64)
    num_classes = int(model.output_shape[-1])
    if len(images) == 0 or len(images) != len(labels):
        raise ConfigError(
            f"need one label per image and at least one image, not {len(images)} images and {len(labels)} labels"
        )
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ConfigError(f"labels must be in [0, {num_classes}) for this model, got {labels.min()}..{labels.max()}")
    class_names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    if len(class_names) != num_classes:
        raise ConfigError(f"{len(class_names)} class names for a model of {num_classes} classes")

    hparams = target_hparams(hparams, method)
    targets_fn = self_target_fn(method, model, hparams)
    logits_fn = tf.function(lambda x: model(x, training=False))
    q_intro, p_teacher, predictions = [], [], []
    batch_size = min(batch_size, len(images))
    for start in range(0, len(images), batch_size):
        count = min(batch_size, len(images) - start)
        # A short last batch is padded with repeats (every example is explained on its own in
        # inference mode), so the graphs are traced once; the padding is cut off again.
        rows = np.resize(np.arange(start, start + count), batch_size)
        x, y = tf.constant(images[rows]), tf.constant(labels[rows], tf.int32)
        q_intro.append(targets_fn(x, y).numpy()[:count])
        # float64: identical distributions must give identical means (and ranks) up to rounding.
        teacher_logits = tf.cast(teacher(x), tf.float64)
        if teacher_logits.shape[-1] != num_classes:
            raise ConfigError(f"the teacher predicts {teacher_logits.shape[-1]} classes, the model {num_classes}")
        p_teacher.append(tf.nn.softmax(teacher_logits / teacher_temperature, axis=-1).numpy()[:count])
        predictions.append(np.argmax(logits_fn(x).numpy(), axis=-1)[:count])
    q_intro, p_teacher, predictions = np.concatenate(q_intro), np.concatenate(p_teacher), np.concatenate(predictions)

    matrices = {
        "intro": non_gt_class_means(q_intro, labels, num_classes),
        "teacher": non_gt_class_means(p_teacher, labels, num_classes),
        "confusion": confusion_non_gt(predictions, labels, num_classes),
    }
    correlations = {key: row_rank_correlations(matrices[a], matrices[b]) for key, (a, b) in PAIRS.items()}
    return {
        "class_names": class_names,
        "num_images": int(len(labels)),
        "images_per_class": np.bincount(labels, minlength=num_classes).tolist(),
        "model_accuracy": float(np.mean(predictions == labels)),
        "teacher_accuracy": float(np.mean(np.argmax(p_teacher, axis=-1) == labels)),
        "intro_true_class_mass": float(np.mean(q_intro[np.arange(len(labels)), labels])),
        "teacher_true_class_mass": float(np.mean(p_teacher[np.arange(len(labels)), labels])),
        # How per-example each target is: the spread of the true-class mass over the images.
        "intro_true_class_mass_std": float(np.std(q_intro[np.arange(len(labels)), labels])),
        "teacher_true_class_mass_std": float(np.std(p_teacher[np.arange(len(labels)), labels])),
        # Whether the two targets soften the same examples: the rank correlation over images of their true-class
        # masses (KD's gain here rests on how the teacher's mass varies from image to image, docs/findings.md).
        "true_class_mass_rank_correlation": spearman(
            q_intro[np.arange(len(labels)), labels], p_teacher[np.arange(len(labels)), labels]
        ),
        "method": method,
        "hparams": {k: v for k, v in hparams.items()},
        "teacher_temperature": float(teacher_temperature),
        "matrices": matrices,
        "rank_correlation": correlations,
        "mean_rank_correlation": {key: _nanmean(values) for key, values in correlations.items()},
        "classes_in_mean": {key: int(np.isfinite(values).sum()) for key, values in correlations.items()},
    }


def to_json(value: Any) -> Any:
    """`value` with numpy arrays as nested lists and NaN as None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _as_float_array(values) -> np.ndarray:
    """An analyse() array or its JSON form (None for NaN) as a float array."""
    return np.array(values, dtype=np.float64)


def _signed(value: float | None) -> str:
    """A correlation as +0.00, '-' where undefined or not measured (results made before it existed)."""
    return "-" if value is None or not np.isfinite(value) else f"{value:+.2f}"


def markdown_table(result: dict) -> str:
    """One row per class: its three rank correlations and the wrong class intro and teacher rank
    first; then the means over classes. Takes `analyse`'s result or the JSON file's content."""
    names = list(result["class_names"])
    correlations = {key: _as_float_array(result["rank_correlation"][key]) for key in PAIRS}
    top = {}
    for which in ("intro", "teacher"):
        matrix = _as_float_array(result["matrices"][which])
        top[which] = ["-" if not np.isfinite(row).any() else names[int(np.nanargmax(row))] for row in matrix]
    header = ["class", "rank corr. intro vs teacher", "intro vs confusion", "teacher vs confusion"]
    header += ["top wrong class (intro)", "top wrong class (teacher)"]
    body = [
        [name, *(_signed(float(correlations[key][y])) for key in PAIRS), top["intro"][y], top["teacher"][y]]
        for y, name in enumerate(names)
    ]
    means = [_signed(float(_as_float_array(result["mean_rank_correlation"][key]))) for key in PAIRS]
    body.append(["**mean**", *means, "", ""])
    return tables.table(header, body) + "\n"


# ---------------------------------------------------------------------------------- docs/target_content.md


def _run_name(path: str) -> str:
    """A model file's study and run folder (e.g. sweep_cifar10/tau_0.01-seed10)."""
    if not path.endswith(".keras"):
        return path
    folder = os.path.dirname(os.path.normpath(path))
    return f"{os.path.basename(os.path.dirname(folder))}/{os.path.basename(folder)}"


def _analysed_images(result: dict) -> str:
    """Which images a result was measured on (results before `images` existed: held out)."""
    if result.get("images", "held_out") == "training":
        return f"{result['num_images']} of the {result['num_train']} training images"
    return f"first {result['num_images']} of {result['eval_split']}"


def _softness(hparams: dict, method: str = "introspective") -> str:
    """The setting that made a target soft: tau, or the true-class mass it was solved for."""
    if method == "pskd_explained":
        return f"PS-KD alpha {hparams['alpha']:g}, tau {hparams['similarity_temperature']:g}"
    if hparams.get("target_true_mass"):
        return f"mass {hparams['target_true_mass']:g} ({hparams.get('target_mass_scope', 'batch')})"
    return str(hparams["similarity_temperature"])


def _mass(result: dict, which: str) -> str:
    """Mean true-class mass over the images, ± its spread over them where measured."""
    spread = result.get(f"{which}_true_class_mass_std")
    return f"{result[f'{which}_true_class_mass']:.3f}" + (f" ± {spread:.3f}" if spread is not None else "")


def models_summary(results: list[dict], shown: dict, measured: str) -> str:
    """What the introspective target carries against a teacher's soft targets, as the docs show it: a
    row per analysed model (this tool's JSON results), which images, `measured` (when and where, from
    the results' provenance), then the per-class table of `shown`."""
    header = "analysed model | images | its accuracy % | tau or mass | teacher | teacher accuracy % | "
    header += " | ".join(key.replace("_", " ") for key in PAIRS) + " | q's mass on y | teacher's mass on y (T)"
    header += " | mass on y: rank corr. over images"
    body = [
        [
            _run_name(r["model_path"]),
            _analysed_images(r),
            f"{100 * r['model_accuracy']:.2f}",
            _softness(r["hparams"], r.get("method", "introspective")),
            _run_name(r["teacher_path"]),
            f"{100 * r['teacher_accuracy']:.2f}",
            *(f"{r['mean_rank_correlation'][key]:+.2f}" for key in PAIRS),
            _mass(r, "intro"),
            f"{_mass(r, 'teacher')} ({r['teacher_temperature']:g})",
            _signed(r.get("true_class_mass_rank_correlation")),
        ]
        for r in results
    ]
    on_training_images = any(r.get("images", "held_out") != "held_out" for r in results)
    return (
        tables.table(header, body)
        + "\n\nMean over classes of the per-class Spearman rank correlations, on held-out images no model was "
        "trained on"
        + (
            " (rows on training images: images the analysed model and its teacher were both trained on, what a KD "
            "loss sees)"
            if on_training_images
            else ""
        )
        + "; last column: the Spearman correlation over the images of q's and the teacher's mass on the true class "
        "(+1: both soften the same examples most; '-': measured before this column existed)"
        + f"; measured {measured}. Per class, for {_run_name(shown['model_path'])} "
        f"(teacher {_run_name(shown['teacher_path'])}):\n\n{markdown_table(shown)}"
        "\n![Class-mean non-GT distributions of both targets and the confusion matrix](figures/target_content.png)"
    )


# --------------------------------------------------------------------------------------------- figure


def plot(result: dict, path: str) -> str:
    """Writes the three matrices as heatmaps on one colour scale and the per-class rank correlation
    of intro vs teacher as bars (PNG, written to a temporary file and renamed); returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["class_names"])
    num_classes = len(names)
    matrices = [_as_float_array(result["matrices"][k]) for k in ("intro", "teacher", "confusion")]
    finite = np.concatenate([m[np.isfinite(m)] for m in matrices])
    vmax = float(finite.max()) if finite.size else 1.0
    temperature = result.get("teacher_temperature", "?")
    titles = [
        "introspective soft target q",
        f"teacher softmax(z / {temperature:g})" if isinstance(temperature, float) else "teacher softmax(z / T)",
        "model's confusions",
    ]
    step = max(1, int(np.ceil(num_classes / 20)))  # at most ~20 labelled ticks per axis
    ticks = np.arange(0, num_classes, step)
    tick_labels = [names[i] for i in ticks]
    font = 8 if num_classes <= 10 else 6

    cmap = matplotlib.colormaps["viridis"].copy()
    cmap.set_bad("0.85")  # the undefined diagonal (and rows without data) in light grey
    fig = plt.figure(figsize=(15, 8.2), layout="constrained")
    grid = fig.add_gridspec(2, 3, height_ratios=[3.2, 1.3])
    image = None
    for i, (matrix, title) in enumerate(zip(matrices, titles)):
        ax = fig.add_subplot(grid[0, i])
        # A square-root scale: near-uniform rows (about 1 / (C-1)) still show their order next to peaked ones.
        norm = matplotlib.colors.PowerNorm(0.5, vmin=0.0, vmax=vmax)
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, norm=norm, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(ticks, tick_labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=font)
        ax.set_yticks(ticks, tick_labels if i == 0 else [], fontsize=font)
        ax.set_xlabel("other class c", fontsize=9)
        if i == 0:
            ax.set_ylabel("true class y", fontsize=9)
    bar = fig.colorbar(image, ax=fig.axes, shrink=0.9, location="right", pad=0.01)
    bar.set_label("mean share of the wrong-class mass (rows sum to 1; sqrt scale)", fontsize=8)
    bar.ax.tick_params(labelsize=7)

    ax = fig.add_subplot(grid[1, :])
    correlation = _as_float_array(result["rank_correlation"]["intro_vs_teacher"])
    mean = float(_as_float_array(result["mean_rank_correlation"]["intro_vs_teacher"]))
    shown = np.nan_to_num(correlation)
    colours = np.where(np.isfinite(correlation), np.where(shown >= 0, "tab:blue", "tab:red"), "0.7")
    ax.bar(np.arange(num_classes), shown, color=colours, width=0.7)
    for y in np.flatnonzero(~np.isfinite(correlation)):
        ax.text(y, 0.05, "n/a", ha="center", va="bottom", fontsize=6, color="0.4")
    ax.axhline(0.0, color="black", linewidth=0.6)
    if np.isfinite(mean):
        ax.axhline(mean, color="tab:green", linestyle="--", linewidth=1.0, label=f"mean {mean:+.2f}")
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlim(-0.6, num_classes - 0.4)
    ax.set_xticks(
        ticks,
        tick_labels,
        rotation=0 if num_classes <= 10 else 45,
        fontsize=font,
        ha="center" if num_classes <= 10 else "right",
    )
    ax.set_ylabel("Spearman", fontsize=9)
    ax.set_title("per-class rank correlation of the wrong classes: introspective target vs teacher", fontsize=10)
    ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"Wrong-class structure of the soft targets on {result['num_images']} images", fontsize=11)

    with resume.replaced_atomically(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------- CLI


def load_images(
    dataset: str,
    *,
    num_images: int,
    batch_size: int,
    data_dir: str | None = None,
    eval_split: str = "validation",
    validation_split: float = 0.1,
    training_images: bool = False,
    train_limit: int = 0,
) -> tuple[np.ndarray, np.ndarray, data_lib.Data]:
    """The first `num_images` (or all, if fewer) images and labels of the held-out split, in the
    split's fixed order, with the dataset's description. `training_images=True`: `num_images` of the
    training images instead (the first `train_limit`, as train.py takes them), unaugmented, in a fixed
    shuffled order -- the images a KD loss sees, where a teacher is more confident than on held-out ones."""
    if num_images <= 0:
        raise ConfigError(f"num_images must be > 0, not {num_images}")
    data = data_lib.load(
        dataset,
        batch_size=batch_size,
        data_dir=data_dir,
        eval_split=eval_split,
        validation_split=validation_split,
        train_limit=train_limit,
        augment=False,
    )
    images, labels, count = [], [], 0
    with data_lib.naming_unreadable_images(dataset):
        for x, y in data.train if training_images else data.eval:
            images.append(x.numpy())
            labels.append(y.numpy())
            count += len(y)
            if count >= num_images:
                break
    if not images:
        raise ConfigError(f"the {'training' if training_images else data.eval_split} split of '{dataset}' is empty")
    return np.concatenate(images)[:num_images], np.concatenate(labels)[:num_images], data


def run(
    model_path: str,
    teacher_path: str,
    dataset: str,
    *,
    output: str,
    figure: str = "",
    data_dir: str | None = None,
    eval_split: str = "validation",
    validation_split: float = 0.1,
    num_images: int = 2000,
    batch_size: int = 128,
    teacher_temperature: float = 4.0,
    hparams: dict[str, Any] | None = None,
    method: str = "introspective",
    training_images: bool = False,
    train_limit: int = 0,
) -> dict:
    """Loads everything, checks it fits, analyses, and writes the JSON (and the figure if asked)."""
    if not model_path:
        raise ConfigError("give the model to analyse: --model_path=PATH (a model.keras, run folder or export)")
    if not teacher_path:
        raise ConfigError("give a teacher: --teacher=PATH (a model.keras or a SavedModel export)")
    target_hparams(hparams, method)  # a bad method or setting fails before anything is loaded
    model = visualize.load_classifier(model_path)
    images, labels, data = load_images(
        dataset,
        num_images=num_images,
        batch_size=batch_size,
        data_dir=data_dir,
        eval_split=eval_split,
        validation_split=validation_split,
        training_images=training_images,
        train_limit=train_limit,
    )
    teacher_lib.check_fits(
        f"model '{model_path}'", model.input_shape[1:], model.output_shape[-1], data.image_shape, data.num_classes
    )
    teacher = teacher_lib.load(teacher_path, data.image_shape, data.num_classes)
    result = analyse(
        model,
        teacher,
        images,
        labels,
        hparams=hparams,
        method=method,
        teacher_temperature=teacher_temperature,
        batch_size=batch_size,
        class_names=data.class_names,
    )
    result.update(
        model_path=model_path,
        teacher_path=teacher_path,
        dataset=dataset,
        eval_split=data.eval_split,
        images="training" if training_images else "held_out",
        num_train=data.num_train,
        provenance=provenance.record("introspective.py"),
    )
    if output:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        resume.write_text_atomically(output, json.dumps(to_json(result), indent=1, allow_nan=False) + "\n")
    if figure:
        plot(result, figure)
    return result


def _define_flags() -> None:
    """Only when run as a program: train.py defines some of the same names, and tests import both."""
    flags.DEFINE_string(
        "model_path", None, "The trained model to analyse: model.keras, a run folder or a SavedModel export."
    )
    flags.DEFINE_string("teacher", None, "The teacher: a model.keras or a SavedModel export of this project.")
    flags.DEFINE_string("dataset", "folder:../shared/data/cifar10", "Dataset the models were trained on.")
    flags.DEFINE_string("data_dir", None, "TFDS data directory.")
    flags.DEFINE_enum("eval_split", "validation", list(data_lib.EVAL_SPLITS), "Held-out split to analyse on.")
    flags.DEFINE_float("validation_split", 0.1, "As in train.py.")
    flags.DEFINE_integer("num_images", 2000, "Images of the split to analyse (its first ones).")
    flags.DEFINE_enum(
        "images", "held_out", ["held_out", "training"], "Analyse held-out images, or the training images (unaugmented)."
    )
    flags.DEFINE_integer(
        "train_limit", 0, "As in train.py: the training images the models saw (with --images=training)."
    )
    flags.DEFINE_integer("batch_size", 128, "Batch size.")
    flags.DEFINE_float("teacher_temperature", 4.0, "T of the teacher's softmax(z / T), as in the kd runs.")
    flags.DEFINE_enum(
        "method",
        "introspective",
        list(TARGET_METHODS),
        "Whose self-explanation target to analyse; settings not given keep that method's defaults.",
    )
    run_flags.define_hyperparameter_flags("introspective", TARGET_HPARAMS)
    flags.DEFINE_string(
        "output", "target_content.json", "JSON file to write ('' for none); docs read results/target_content/*.json."
    )
    flags.DEFINE_string("figure", "target_content.png", "PNG figure to write ('' for none).")


def main(argv):
    del argv
    try:
        result = run(
            FLAGS.model_path,
            FLAGS.teacher,
            FLAGS.dataset,
            output=FLAGS.output,
            figure=FLAGS.figure,
            data_dir=FLAGS.data_dir,
            eval_split=FLAGS.eval_split,
            validation_split=FLAGS.validation_split,
            num_images=FLAGS.num_images,
            batch_size=FLAGS.batch_size,
            teacher_temperature=FLAGS.teacher_temperature,
            hparams={name: FLAGS[name].value for name in TARGET_HPARAMS if FLAGS[name].present},
            method=FLAGS.method,
            training_images=FLAGS.images == "training",
            train_limit=FLAGS.train_limit,
        )
    except ConfigError as err:
        sys.exit(f"error: {err}")
    print(
        f"model={FLAGS.model_path} teacher={FLAGS.teacher} data={FLAGS.dataset} "
        f"{'training' if result['images'] == 'training' else result['eval_split']} "
        f"images={result['num_images']} T={FLAGS.teacher_temperature}"
    )
    print(markdown_table(result), end="")
    for path in (FLAGS.output, FLAGS.figure):
        if path:
            print(f"wrote {path}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
