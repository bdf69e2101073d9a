"""All-class explanations: equal to the per-class definition, to finite differences, and per-example."""

import keras
import numpy as np
import pytest
import references
import tensorflow as tf

from introspective_tf import explanations, models


def _cnn_with_nontrivial_batchnorm(num_classes=5, seed=1):
    keras.utils.set_random_seed(seed)
    model = models.small_cnn(input_shape=(8, 8, 3), num_classes=num_classes)
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # moving statistics away from (0, 1), so inference mode matters
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.5, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    return model


@pytest.mark.parametrize("implementation", explanations.IMPLEMENTATIONS)
def test_vectorised_equals_per_class_reference(implementation):
    model = _cnn_with_nontrivial_batchnorm()
    images = np.random.default_rng(0).uniform(0, 255, (3, 8, 8, 3)).astype("float32")
    compiled = tf.function(lambda x: explanations.all_class_input_gradients(model, x, implementation=implementation))
    fast = compiled(images)
    reference = references.per_class_input_gradients_reference(model, images)
    assert fast.shape == (3, 5, 8, 8, 3)
    np.testing.assert_allclose(fast, reference, rtol=1e-4, atol=1e-7)


def test_input_gradients_match_finite_differences():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((2, 2, 1), dtype="float64"),
            keras.layers.Flatten(dtype="float64"),
            keras.layers.Dense(6, activation="tanh", dtype="float64"),
            keras.layers.Dense(3, dtype="float64"),
        ]
    )
    images = np.random.default_rng(0).normal(size=(2, 2, 2, 1))
    grads = explanations.all_class_input_gradients(model, tf.constant(images)).numpy()
    h = 1e-6
    for i in range(2):
        for pixel in np.ndindex(2, 2, 1):
            plus, minus = images.copy(), images.copy()
            plus[(i, *pixel)] += h
            minus[(i, *pixel)] -= h
            numeric = (model(plus).numpy()[i] - model(minus).numpy()[i]) / (2 * h)
            np.testing.assert_allclose(grads[i, :, *pixel], numeric, rtol=1e-6, atol=1e-9)


def test_inference_mode_explanation_does_not_depend_on_the_rest_of_the_batch():
    model = _cnn_with_nontrivial_batchnorm()
    rng = np.random.default_rng(0)
    first = rng.uniform(0, 255, (1, 8, 8, 3)).astype("float32")
    batch_a = np.concatenate([first, rng.uniform(0, 255, (3, 8, 8, 3)).astype("float32")])
    batch_b = np.concatenate([first, rng.uniform(0, 255, (3, 8, 8, 3)).astype("float32")])
    a = explanations.all_class_input_gradients(model, batch_a)[0]
    b = explanations.all_class_input_gradients(model, batch_b)[0]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    # In training mode BatchNorm couples the batch: the same example gets another "explanation".
    a = explanations.all_class_input_gradients(model, batch_a, training=True)[0]
    b = explanations.all_class_input_gradients(model, batch_b, training=True)[0]
    assert not np.allclose(a, b, rtol=1e-3)


def test_unknown_implementation():
    model = _cnn_with_nontrivial_batchnorm()
    with pytest.raises(ValueError, match="unknown explanation implementation"):
        explanations.all_class_input_gradients(model, np.zeros((1, 8, 8, 3), "float32"), implementation="magic")
