"""Methods: train_step applies exactly the gradient of the stated loss, with the target held constant."""

import keras
import numpy as np
import pytest
import references
import tensorflow as tf

from introspective_tf import explanations, methods, models, soft_targets
from introspective_tf.errors import ConfigError
from introspective_tf.methods.introspective import Introspective


def _batch(seed=0, n=6):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, 8, 8, 3)).astype("float32"), rng.integers(0, 4, n).astype("int32")


def _gradcam_of_the_training_pass(backbone, images):
    """Grad-CAM written out: one tape.gradient per class w.r.t. the last block's training-mode output."""
    with tf.GradientTape(persistent=True) as tape:
        features, logits = explanations.with_layer_output(backbone, "last_conv_block")(images, training=True)
        per_class = [logits[:, c] for c in range(logits.shape[-1])]
    maps = []
    for z_c in per_class:
        weights = tf.reduce_mean(tape.gradient(z_c, features), axis=[1, 2])  # [B, k]
        maps.append(tf.nn.relu(tf.einsum("bhwk,bk->bhw", features, weights)))
    return tf.stack(maps, axis=1)


def _expected_loss(name, backbone, images, labels, hparams):
    """The method's loss written out from its definition, independent of the Method classes."""
    logits = backbone(images, training=True)
    if name == "standard":
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    if hparams.get("explanation", "gradcam") == "gradcam":
        explained = _gradcam_of_the_training_pass(backbone, images)  # the default: explanation_mode=auto -> shared
    else:
        explained = references.per_class_input_gradients_reference(backbone, images)  # inference mode
    similarity = soft_targets.cosine_similarity_to_true_class(explained, labels)
    q = soft_targets.soft_target(
        similarity, labels, hparams["soft_target"], hparams["similarity_temperature"], hparams["epsilon"]
    )
    return soft_targets.distillation_loss(labels, logits, q, hparams["alpha"], hparams["temperature"])


@pytest.mark.parametrize(
    "name,hparams",
    [
        ("standard", {}),
        (
            "introspective",
            dict(alpha=0.7, temperature=2.0, similarity_temperature=0.5, soft_target="softmax", epsilon=0.1),
        ),
        (
            "introspective",
            dict(alpha=0.5, temperature=1.0, similarity_temperature=0.2, soft_target="smoothing", epsilon=0.3),
        ),
        (
            "introspective",
            dict(
                alpha=0.7,
                temperature=2.0,
                similarity_temperature=0.5,
                soft_target="softmax",
                epsilon=0.1,
                explanation="gradient",
            ),
        ),
    ],
)
def test_one_sgd_step_moves_weights_by_the_loss_gradient(name, hparams):
    images, labels = _batch()
    keras.utils.set_random_seed(0)
    backbone = models.small_cnn((8, 8, 3), num_classes=4, weight_decay=1e-3)
    trainer = methods.build(name, backbone, hparams)
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    before = [v.numpy() for v in backbone.trainable_variables]

    with tf.GradientTape() as tape:
        loss = _expected_loss(name, backbone, images, labels, hparams) + tf.add_n(backbone.losses)
    expected_grads = tape.gradient(loss, backbone.trainable_variables)

    trainer.train_on_batch(images, labels)
    for old, new, grad in zip(before, backbone.trainable_variables, expected_grads):
        np.testing.assert_allclose(old - new.numpy(), grad, rtol=2e-3, atol=2e-5)


def test_introspective_target_is_a_distribution_peaked_on_the_label():
    images, labels = _batch()
    backbone = models.small_cnn((8, 8, 3), num_classes=4)
    q = Introspective(backbone, similarity_temperature=0.1, explanation="gradient").targets(images, labels).numpy()
    np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-5)
    assert np.all(q.argmax(-1) == labels)  # s_y = 1 is the largest cosine


def test_test_step_reports_backbone_cross_entropy_and_accuracy():
    images, labels = _batch(n=8)
    backbone = models.small_cnn((8, 8, 3), num_classes=4)
    trainer = methods.build("introspective", backbone)
    trainer.compile(optimizer="sgd")
    result = trainer.evaluate(images, labels, verbose=0, return_dict=True)
    logits = backbone(images, training=False)
    ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    assert np.isclose(result["loss"], ce, rtol=1e-5)
    assert np.isclose(result["accuracy"], np.mean(np.argmax(logits, -1) == labels))


@pytest.mark.parametrize(
    "hparams,message",
    [
        ({"alpha": 1.5}, "alpha"),
        ({"temperature": 0.0}, "temperature"),
        ({"similarity_temperature": -1.0}, "similarity_temperature"),
        ({"soft_target": "uniform"}, "soft_target"),
        ({"epsilon": 2.0}, "epsilon"),
    ],
)
def test_bad_hyper_parameters_are_config_errors(hparams, message):
    with pytest.raises(ConfigError, match=message):
        methods.build("introspective", models.small_cnn((8, 8, 3), 4), hparams)


def test_unknown_method():
    with pytest.raises(ConfigError, match="unknown method"):
        methods.build("teacher_free", models.small_cnn((8, 8, 3), 4))


def test_every_hyper_parameter_is_a_run_flag_that_unset_leaves_the_method_default():
    from absl import flags

    from introspective_tf.training import run_flags

    flag_values = flags.FlagValues()
    run_flags.define_run_flags(flag_values)
    declared = {name for cls in methods.METHODS.values() for name in cls.hyperparameters()}
    assert declared <= set(flag_values) and all(flag_values[name].default is None for name in declared)
    config = run_flags.parse_run_line(["--method=kd", "--alpha=0.9"], "a test")
    assert config.method == "kd" and config.hparams == {"alpha": 0.9}
    resolved = methods.resolve("kd", config.hparams)
    assert (
        resolved["alpha"] == 0.9
        and resolved["temperature"] == methods.get("kd").hyperparameters()["temperature"].default
    )
    with pytest.raises(ConfigError, match="a test: flag --num_probes=2.5"):
        run_flags.parse_run_line(["--num_probes=2.5"], "a test")


@pytest.mark.parametrize("name", sorted(methods.METHODS))
def test_every_hyperparameter_is_declared_once_with_a_type_default_and_help(name):
    for key, declared in methods.get(name).hyperparameters().items():
        assert declared.type in (float, int, str, bool) and isinstance(declared.default, declared.type), key
        assert len(declared.help) > 10 and not declared.help.endswith(":"), (name, key, declared.help)
    assert methods.resolve(name) == {k: h.default for k, h in methods.get(name).hyperparameters().items()}


def test_hyperparameters_resolve_with_casts_and_reject_unknown_keys():
    assert methods.resolve("kd", {"alpha": "0.25", "temperature": 2})["temperature"] == 2.0
    assert methods.get("kd").hyperparameters()["kd_target"].help.endswith("(shuffled_non_gt).")  # continuation line
    with pytest.raises(ConfigError, match="method 'standard' takes no hyper-parameter 'alpha' \\(it takes: none\\)"):
        methods.resolve("standard", {"alpha": 0.5})
    with pytest.raises(ConfigError, match="num_probes=2.5 is not a valid int"):
        methods.resolve("introspective", {"num_probes": 2.5})
    flags = methods.all_hyperparameters()
    assert flags["alpha"][0] is float and "kd:" in flags["alpha"][1] and "introspective:" in flags["alpha"][1]
