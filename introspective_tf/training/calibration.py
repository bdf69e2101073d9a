"""Calibration: does the model's confidence match how often it is right?

Accuracy says nothing about the confidence a prediction comes with, yet soft-target methods change
exactly that. Three numbers/figures per run:

* NLL: mean -log p(y | x) (the test cross-entropy, a proper scoring rule).
* ECE (Guo et al. 2017): split predictions into 15 equal-width confidence bins over [0, 1]; ECE is
  sum_b (n_b / n) |accuracy_b - mean confidence_b|, where confidence is the top probability.
* A reliability diagram: accuracy per confidence bin against the diagonal of perfect calibration.
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

NUM_BINS = 15
RELIABILITY_PNG = "reliability.png"
_TINY = 1e-12


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(y | x) over examples; probabilities [N, C], labels [N]. From logits, use `nll_from_logits`."""
    probabilities, labels = np.asarray(probabilities, np.float64), np.asarray(labels, np.int64)
    return float(-np.mean(np.log(np.maximum(probabilities[np.arange(len(labels)), labels], _TINY))))


def nll_from_logits(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log softmax(z)_y: exact even where a float32 probability underflows to 0."""
    log_probabilities = tf.nn.log_softmax(tf.convert_to_tensor(logits, tf.float64), axis=-1).numpy()
    return float(-np.mean(log_probabilities[np.arange(len(labels)), np.asarray(labels, np.int64)]))


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, num_bins: int = NUM_BINS) -> dict[str, np.ndarray]:
    """Per confidence bin (b-1)/B < conf <= b/B: example count, accuracy and mean confidence."""
    probabilities, labels = np.asarray(probabilities, np.float64), np.asarray(labels, np.int64)
    confidence = probabilities.max(axis=-1)
    correct = (probabilities.argmax(axis=-1) == labels).astype(np.float64)
    # Bin b holds (b/B, (b+1)/B]; a confidence of exactly 0 (impossible for a softmax) would go to bin 0.
    index = np.clip(np.ceil(confidence * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    counts = np.bincount(index, minlength=num_bins).astype(np.float64)
    safe = np.maximum(counts, 1.0)
    return {
        "counts": counts,
        "accuracy": np.bincount(index, weights=correct, minlength=num_bins) / safe,
        "confidence": np.bincount(index, weights=confidence, minlength=num_bins) / safe,
    }


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, num_bins: int = NUM_BINS) -> float:
    """sum_b (n_b / n) |acc_b - conf_b| over `num_bins` equal-width confidence bins."""
    bins = reliability_bins(probabilities, labels, num_bins)
    weights = bins["counts"] / max(bins["counts"].sum(), 1.0)
    return float(np.sum(weights * np.abs(bins["accuracy"] - bins["confidence"])))


def plot_reliability_diagram(
    probabilities: np.ndarray,
    labels: np.ndarray,
    path: str,
    title: str = "",
    num_bins: int = NUM_BINS,
    nll: float | None = None,
) -> str:
    """Writes a reliability diagram (accuracy per confidence bin, with the gap to the diagonal) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = reliability_bins(probabilities, labels, num_bins)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    centers, width = (edges[:-1] + edges[1:]) / 2, 1.0 / num_bins
    filled = bins["counts"] > 0
    ece = expected_calibration_error(probabilities, labels, num_bins)
    nll = negative_log_likelihood(probabilities, labels) if nll is None else nll

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.5, 5.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    top.bar(
        centers[filled],
        bins["accuracy"][filled],
        width=width,
        color="tab:blue",
        edgecolor="black",
        linewidth=0.5,
        label="accuracy",
    )
    gap_bottom = np.minimum(bins["accuracy"], bins["confidence"])[filled]
    top.bar(
        centers[filled],
        np.abs(bins["confidence"] - bins["accuracy"])[filled],
        bottom=gap_bottom,
        width=width,
        color="tab:red",
        alpha=0.35,
        edgecolor="tab:red",
        hatch="//",
        linewidth=0.5,
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
    top.set_title(f"{title}\nECE ({num_bins} bins) = {100 * ece:.2f}%, NLL = {nll:.3f}".strip(), fontsize=10)
    top.legend(loc="upper left", fontsize=8, framealpha=0.9)
    bottom.bar(
        centers,
        bins["counts"] / max(bins["counts"].sum(), 1.0),
        width=width,
        color="gray",
        edgecolor="black",
        linewidth=0.5,
    )
    bottom.set(xlabel="confidence (top probability)", ylabel="share of\nexamples")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def predict_logits(model: keras.Model, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels for every example of a batched (images, labels) dataset."""
    logits, labels = [], []
    for images, batch_labels in dataset:
        logits.append(model(images, training=False).numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(logits), np.concatenate(labels)


def evaluate(
    model: keras.Model, dataset: tf.data.Dataset, output_dir: str | None = None, title: str = ""
) -> dict[str, Any]:
    """NLL and ECE of `model` (logits) on `dataset`; with `output_dir`, also writes the reliability diagram."""
    logits, labels = predict_logits(model, dataset)
    probabilities = tf.nn.softmax(tf.convert_to_tensor(logits, tf.float64), axis=-1).numpy()
    results: dict[str, Any] = {
        "eval_nll": nll_from_logits(logits, labels),
        "eval_ece": expected_calibration_error(probabilities, labels),
    }
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        results["reliability_diagram"] = plot_reliability_diagram(
            probabilities, labels, os.path.join(output_dir, RELIABILITY_PNG), title, nll=results["eval_nll"]
        )
    return results
