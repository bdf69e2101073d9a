"""Mixed precision: the backbone computes in 16 bits, explanations, soft targets and losses stay float32."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from introspective_tf import explanations, methods, models


@pytest.fixture(params=["mixed_float16", pytest.param("mixed_bfloat16", marks=pytest.mark.slow)])
def policy(request):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy(previous)


def test_introspective_step_under_mixed_precision(policy):
    rng = np.random.default_rng(0)
    images, labels = rng.uniform(0, 255, (8, 16, 16, 3)).astype("float32"), rng.integers(0, 4, 8).astype("int32")
    keras.utils.set_random_seed(0)
    backbone = models.small_cnn((16, 16, 3), num_classes=4)
    assert backbone(images).dtype == keras.mixed_precision.global_policy().compute_dtype  # really 16-bit
    explained = explanations.all_class_input_gradients(backbone, images)
    assert explained.dtype == tf.float32 and np.all(np.isfinite(explained))
    trainer = methods.build("introspective", backbone, {"similarity_temperature": 0.5, "explanation": "gradient"})
    target = trainer.targets(images, labels)
    assert target.dtype == tf.float32
    np.testing.assert_allclose(target.numpy().sum(-1), 1.0, rtol=1e-5)
    trainer.compile(optimizer=keras.optimizers.SGD(0.01))
    if policy == "mixed_float16":  # Keras adds dynamic loss scaling for float16
        assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    before = [w.numpy() for w in backbone.trainable_weights]
    logs = trainer.train_on_batch(images, labels, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert all(w.dtype == "float32" for w in backbone.trainable_weights)  # float32 master weights
    assert any(np.abs(a - b.numpy()).max() > 0 for a, b in zip(before, backbone.trainable_weights))
