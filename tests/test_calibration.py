"""Calibration metrics against hand-computed examples, and the reliability diagram file."""

import math

import matplotlib.image
import numpy as np
import pytest

from introspective_tf.training import calibration

# conf = top probability; correct = argmax == label.
PROBABILITIES = np.array(
    [
        [0.90, 0.05, 0.05],  # y=0: conf 0.90, right, bin (13/15, 14/15]
        [0.81, 0.10, 0.09],  # y=1: conf 0.81, wrong, bin (12/15, 13/15]
        [0.20, 0.50, 0.30],  # y=1: conf 0.50, right, bin (7/15, 8/15]
        [0.35, 0.25, 0.40],  # y=0: conf 0.40, wrong, bin (5/15, 6/15]
        [0.04, 0.92, 0.04],  # y=2: conf 0.92, wrong, bin (13/15, 14/15], shared with the first example
    ]
)
LABELS = np.array([0, 1, 1, 0, 2])


def test_ece_matches_the_hand_computed_value():
    # Bin (13/15, 14/15]: 2 examples, accuracy 1/2, confidence (0.90 + 0.92) / 2 = 0.91 -> gap 0.41.
    # The others are alone in their bins: gaps |0 - 0.81|, |1 - 0.50|, |0 - 0.40|.
    expected = (2 * 0.41 + 0.81 + 0.50 + 0.40) / 5
    assert calibration.expected_calibration_error(PROBABILITIES, LABELS) == pytest.approx(expected)
    assert expected == pytest.approx(0.506)


def test_ece_depends_on_the_binning():
    # One bin: |accuracy - mean confidence| = |2/5 - 3.53/5|.
    assert calibration.expected_calibration_error(PROBABILITIES, LABELS, num_bins=1) == pytest.approx(0.306)


def test_a_calibrated_bin_has_zero_ece():
    probabilities = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
    assert calibration.expected_calibration_error(probabilities, np.array([0, 1])) == pytest.approx(0.0)


def test_nll_matches_the_hand_computed_value():
    expected = -(math.log(0.9) + math.log(0.1) + math.log(0.5) + math.log(0.35) + math.log(0.04)) / 5
    assert calibration.negative_log_likelihood(PROBABILITIES, LABELS) == pytest.approx(expected)


def test_reliability_bins_count_every_example_once():
    bins = calibration.reliability_bins(PROBABILITIES, LABELS)
    assert bins["counts"].sum() == 5 and bins["counts"][13] == 2
    assert bins["accuracy"][13] == pytest.approx(0.5) and bins["confidence"][13] == pytest.approx(0.91)


def test_reliability_diagram_is_a_png(tmp_path):
    path = calibration.plot_reliability_diagram(PROBABILITIES, LABELS, str(tmp_path / "reliability.png"), "test")
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_nll_from_logits_is_exact_where_probabilities_underflow():
    logits = np.array([[0.0, 200.0], [1.0, 0.0]], np.float32)  # softmax(z)_0 underflows to 0 in float32
    expected = (200.0 + math.log1p(math.exp(-200.0)) + math.log1p(math.exp(-1.0))) / 2
    assert calibration.nll_from_logits(logits, np.array([0, 0])) == pytest.approx(expected)


def test_evaluate_agrees_with_keras_cross_entropy(tmp_path):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    features = np.random.default_rng(0).normal(size=(10, 4)).astype("float32") * 20
    labels = np.arange(10) % 3
    dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(4)
    results = calibration.evaluate(model, dataset, str(tmp_path), title="toy")
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, model(features))
    assert results["eval_nll"] == pytest.approx(float(expected), rel=1e-4)
    probabilities = tf.nn.softmax(model(features)).numpy()
    assert results["eval_ece"] == pytest.approx(calibration.expected_calibration_error(probabilities, labels), abs=1e-6)
    assert (tmp_path / calibration.RELIABILITY_PNG).is_file()
