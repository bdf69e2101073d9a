"""Explanation kinds and similarities against straightforward references; the JVP estimator converges."""

import numpy as np
import pytest
import references
import tensorflow as tf
from test_explanations import _cnn_with_nontrivial_batchnorm
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.utils.scores import CategoricalScore

from introspective_tf import explanations, jvp_similarity, methods, models, soft_targets
from introspective_tf.errors import ConfigError

NUM_CLASSES = 5


def _images(n=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 8, 8, 3)).astype("float32")


def _labels(n=3):
    return np.arange(n, dtype="int32") % NUM_CLASSES


@pytest.mark.parametrize("implementation", explanations.IMPLEMENTATIONS)
def test_gradient_x_input_is_input_times_per_class_gradient(implementation):
    model = _cnn_with_nontrivial_batchnorm(NUM_CLASSES)
    images = _images()
    compiled = tf.function(
        lambda x: explanations.all_class_explanations(
            model, x, explanation="gradient_x_input", implementation=implementation
        )
    )
    reference = images[:, None] * references.per_class_input_gradients_reference(model, images).numpy()
    np.testing.assert_allclose(compiled(images), reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "layer,through_head", [("last_conv_block", True), ("last_conv_block", False), ("relu1", False)]
)
def test_gradcam_equals_tf_keras_vis(layer, through_head):
    model = _cnn_with_nontrivial_batchnorm(NUM_CLASSES)
    images = _images()
    explainer = explanations.explainer("gradcam", model, layer=layer)
    if not through_head:
        explainer.head = None  # differentiate the recorded pass instead of the head above the layer
    assert through_head == (explainer.head is not None)
    ours = tf.function(explainer.explain)(images)
    gradcam = Gradcam(model, clone=True)
    for c in range(NUM_CLASSES):
        reference = gradcam(
            CategoricalScore([c] * len(images)),
            images,
            penultimate_layer=layer,
            seek_penultimate_conv_layer=False,
            expand_cam=False,
            normalize_cam=False,
        )
        assert np.abs(reference).max() > 0  # a non-trivial map, so the comparison means something
        np.testing.assert_allclose(ours[:, c], reference, rtol=1e-4, atol=1e-6)


def test_head_above_only_where_the_layer_cuts_the_graph_and_the_head_has_no_mode():
    resnet = models.build("resnet20", (8, 8, 3), NUM_CLASSES)
    assert [layer.name for layer in explanations.head_above(resnet, "last_conv_block").layers[1:]] == ["pool", "logits"]
    assert explanations.head_above(resnet, "last_conv_block_relu1") is None  # the shortcut skips it
    assert explanations.head_above(models.small_cnn((8, 8, 3), NUM_CLASSES), "relu1") is None  # BatchNorm above


def test_gradcam_at_a_missing_or_flat_layer_is_a_config_error():
    model = models.small_cnn((8, 8, 3), NUM_CLASSES)
    with pytest.raises(ConfigError, match="no layer 'block9'"):
        explanations.with_layer_output(model, "block9")
    with pytest.raises(ConfigError, match="Grad-CAM needs"):
        explanations.with_layer_output(model, "logits")


def _reference_similarity(explained, labels, kind):
    """numpy, one example and class at a time; a zero (or, for pearson, constant) map has similarity 0."""
    safe = lambda a, b: a / b if b > 0 else 0.0  # noqa: E731
    out = np.zeros(explained.shape[:2])
    for i, y in enumerate(labels):
        true = explained[i, y].ravel().astype("float64")
        for c in range(explained.shape[1]):
            e = explained[i, c].ravel().astype("float64")
            if kind == "cosine":
                out[i, c] = safe(e @ true, np.linalg.norm(e) * np.linalg.norm(true))
            elif kind == "pearson":
                out[i, c] = 1.0 if c == y else safe(np.cov(e, true)[0, 1], np.std(e, ddof=1) * np.std(true, ddof=1))
            else:
                out[i, c] = -safe(np.linalg.norm(e - true), np.linalg.norm(true))
    return out


@pytest.mark.parametrize("kind", soft_targets.SIMILARITIES)
def test_similarities_equal_their_definitions(kind):
    explained = np.random.default_rng(1).normal(size=(4, NUM_CLASSES, 6, 6)).astype("float32") + 0.3
    labels = np.array([0, 4, 2, 2], "int32")
    reference = _reference_similarity(explained, labels, kind)
    np.testing.assert_allclose(
        soft_targets.similarity_to_true_class(explained, labels, kind), reference, rtol=1e-4, atol=1e-5
    )
    # The estimator's formula, fed the exact moments, gives the same numbers.
    flat = explained.reshape(4, NUM_CLASSES, -1).astype("float64")
    true = flat[np.arange(4), labels]
    moments = np.einsum("bcd,bd->bc", flat, true), (flat**2).sum(-1), flat.sum(-1)
    from_moments = soft_targets.similarity_from_moments(
        *[tf.constant(m, tf.float32) for m in moments], labels, flat.shape[-1], kind
    )
    np.testing.assert_allclose(from_moments, reference, rtol=1e-3, atol=1e-4)


# Every similarity once, every estimable explanation at least once: the estimate is made of the probes'
# moments, which the next test checks for each explanation, and each similarity reads only those moments.
_ESTIMATED = [
    (kind, jvp_similarity.estimable()[i % len(jvp_similarity.estimable())])
    for i, kind in enumerate(soft_targets.SIMILARITIES)
]


@pytest.mark.slow  # the quick subset has the exact moments and the norms' convergence (the next test)
@pytest.mark.parametrize("kind, explanation", _ESTIMATED)
def test_jvp_estimate_converges_to_exact_similarity_as_probes_grow(explanation, kind):
    model = _cnn_with_nontrivial_batchnorm(NUM_CLASSES)
    images, labels = _images(4), _labels(4)
    explained = explanations.all_class_explanations(model, images, explanation=explanation)
    exact = soft_targets.similarity_to_true_class(explained, labels, kind).numpy()
    estimate = tf.function(
        lambda x, y, k: jvp_similarity.estimate_similarity(
            model, x, y, explanation=explanation, similarity=kind, num_probes=k, seed=7
        ),
        reduce_retracing=True,
    )
    errors = {k: np.abs(estimate(images, labels, k).numpy() - exact).mean() for k in (4, 64, 2048)}
    assert errors[2048] < errors[64] < errors[4], errors
    assert errors[2048] < 0.02, errors
    true_class = estimate(images, labels, 4).numpy()[np.arange(4), labels]
    np.testing.assert_allclose(true_class, exact[np.arange(4), labels], atol=1e-6)  # set exactly


@pytest.mark.parametrize(
    "explanation",
    [pytest.param(e, marks=() if e == "gradient" else pytest.mark.slow) for e in jvp_similarity.estimable()],
)
def test_jvp_moments_exact_where_promised_and_norms_converge(explanation):
    model = _cnn_with_nontrivial_batchnorm(NUM_CLASSES)
    images, labels = _images(4), _labels(4)
    flat = (
        explanations.all_class_explanations(model, images, explanation=explanation).numpy().reshape(4, NUM_CLASSES, -1)
    )
    true = flat[np.arange(4), labels]

    def moments(k):
        estimates = jvp_similarity.estimate_moments(
            model, images, labels, explanation=explanation, num_probes=k, with_sums=True, seed=5
        )
        return [m.numpy() for m in estimates]

    dots, squared_norms, sums = moments(2)
    scale = np.abs(flat).max()
    np.testing.assert_allclose(
        dots, np.einsum("bcd,bd->bc", flat, true), rtol=1e-4, atol=1e-5 * scale**2 * flat.shape[-1]
    )
    np.testing.assert_allclose(sums, flat.sum(-1), rtol=1e-4, atol=1e-5 * scale * flat.shape[-1])
    exact_norms = (flat**2).sum(-1)
    np.testing.assert_allclose(squared_norms[np.arange(4), labels], exact_norms[np.arange(4), labels], rtol=1e-5)
    relative_error = {k: np.abs(moments(k)[1] / exact_norms - 1).mean() for k in (2, 32, 2048)}
    assert relative_error[2048] < relative_error[32] < relative_error[2], relative_error
    assert relative_error[2048] < 0.05, relative_error


@pytest.mark.parametrize(
    "hparams",
    [
        dict(explanation="gradcam", similarity="pearson", explanation_mode="inference"),
        dict(explanation="gradient_x_input", similarity="neg_l2", explanation_implementation="pfor"),
    ],
)
def test_introspective_targets_follow_the_chosen_explanation_and_similarity(hparams):
    model = _cnn_with_nontrivial_batchnorm(NUM_CLASSES)
    images, labels = _images(4), _labels(4)
    trainer = methods.build("introspective", model, dict(similarity_temperature=0.5, **hparams))
    explained = explanations.all_class_explanations(model, images, explanation=hparams["explanation"])
    expected = soft_targets.softmax_target(
        _reference_similarity(explained.numpy(), labels, hparams["similarity"]).astype("float32"), 0.5
    )
    np.testing.assert_allclose(tf.function(trainer.targets)(images, labels), expected, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_jvp_training_step_runs_and_targets_approach_exact():
    model = _cnn_with_nontrivial_batchnorm(NUM_CLASSES)
    images, labels = _images(6), _labels(6)
    exact = methods.build("introspective", model, dict(similarity_temperature=0.5, explanation="gradient")).targets(
        images, labels
    )
    fast = methods.build(
        "introspective",
        model,
        dict(similarity_temperature=0.5, explanation="gradient", explanation_estimator="jvp", num_probes=1024),
    )
    kl = tf.reduce_mean(
        soft_targets.kl_divergence_with_temperature(exact, tf.math.log(fast.targets(images, labels)), 1.0)
    )
    assert kl < 0.01
    fast.compile(optimizer="sgd")
    before = [v.numpy() for v in model.trainable_variables]
    logs = fast.train_on_batch(images, labels, return_dict=True)
    assert np.isfinite(logs["loss"]) and not all(
        np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables)
    )


@pytest.mark.parametrize(
    "hparams,message",
    [
        ({"explanation": "saliency"}, "explanation must be"),
        ({"similarity": "dot"}, "similarity must be"),
        ({"explanation_estimator": "magic"}, "explanation_estimator must be"),
        ({"explanation_estimator": "jvp", "explanation": "gradcam"}, "add explanation=gradient"),
        ({"explanation_estimator": "jvp"}, "not 'gradcam'"),  # the default explanation
        ({"explanation_estimator": "jvp", "explanation": "gradient", "num_probes": 0}, "num_probes"),
        (
            {"explanation_estimator": "jvp", "explanation": "gradient", "explanation_mode": "training"},
            "needs explanation_mode=inference",
        ),
        ({"explanation": "gradcam", "explanation_layer": "nope"}, "no layer 'nope'"),
    ],
)
def test_bad_explanation_choices_are_config_errors(hparams, message):
    with pytest.raises(ConfigError, match=message):
        methods.build("introspective", models.small_cnn((8, 8, 3), 4), hparams)


def test_target_agreement_is_zero_kl_for_the_reference_itself_and_positive_otherwise():
    from introspective_tf.tools import agreement

    model = _cnn_with_nontrivial_batchnorm(NUM_CLASSES)
    batches = [(tf.constant(_images(4, seed)), tf.constant(_labels(4))) for seed in (0, 1)]
    exact = {"similarity_temperature": 0.5, "explanation": "gradient"}
    same, other = agreement.compare_targets(
        model,
        batches,
        exact,
        [{**exact, "explanation_implementation": "pfor"}, {"similarity_temperature": 0.5, "explanation": "gradcam"}],
    )
    assert abs(same["kl"]) < 1e-5 and same["top_wrong_agreement"] == 1.0
    assert other["kl"] > 1e-3


@pytest.mark.parametrize("explanation", ["gradcam", "gradient"])
def test_shared_pass_explains_the_training_pass_itself(explanation):
    """explanation_mode=shared gives the targets of a separate training-mode pass, and the same logits."""
    model = _cnn_with_nontrivial_batchnorm(NUM_CLASSES)
    images, labels = _images(4), _labels(4)
    settings = dict(explanation=explanation, similarity_temperature=0.5)
    saved = [v.numpy() for v in model.non_trainable_variables]

    def restore():
        for variable, value in zip(model.non_trainable_variables, saved):
            variable.assign(value)

    shared = methods.build("introspective", model, dict(settings, explanation_mode="shared"))
    assert shared.targets(images, labels) is None  # nothing is computed before the training pass
    logits, q = tf.function(shared.shared_forward)(images, labels)
    restore()
    separate = methods.build("introspective", model, dict(settings, explanation_mode="training"))
    np.testing.assert_allclose(q, tf.function(separate.targets)(images, labels), rtol=1e-5, atol=1e-6)
    restore()
    np.testing.assert_allclose(logits, model(images, training=True), rtol=1e-5, atol=1e-5)
    assert np.abs(q.numpy() - np.eye(NUM_CLASSES)[labels]).max() > 0.05  # soft, so the check means something


def test_shared_step_moves_batchnorm_once_like_standard_training():
    """One pass per step: BatchNorm statistics after a shared step equal a standard step's, not twice-updated."""
    images, labels = _images(6), _labels(6)
    moving = {}
    for name, settings in [
        ("standard", {}),
        ("introspective", dict(explanation="gradcam", explanation_mode="shared")),
        ("introspective", dict(explanation="gradcam", explanation_mode="training")),
    ]:
        model = _cnn_with_nontrivial_batchnorm(NUM_CLASSES)
        trainer = methods.build(name, model, settings)
        trainer.compile(optimizer="sgd")
        trainer.train_on_batch(images, labels)
        moving[settings.get("explanation_mode", "standard")] = [v.numpy() for v in model.non_trainable_variables]
    for standard, shared in zip(moving["standard"], moving["shared"]):
        np.testing.assert_allclose(shared, standard, rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(a, b) for a, b in zip(moving["standard"], moving["training"]))


def test_agreement_of_a_training_pass_variant_leaves_the_model_unchanged():
    from introspective_tf.tools import agreement

    model = _cnn_with_nontrivial_batchnorm(NUM_CLASSES)
    before = [v.numpy() for v in model.variables]
    batches = [(tf.constant(_images(4)), tf.constant(_labels(4)))]
    exact = {"similarity_temperature": 0.5, "explanation": "gradient"}
    (row,) = agreement.compare_targets(model, batches, exact, [{**exact, "explanation_mode": "shared"}])
    assert row["kl"] > 1e-4  # batch statistics differ from the moving ones
    for b, v in zip(before, model.variables):
        np.testing.assert_array_equal(b, v.numpy())


@pytest.mark.parametrize(
    "settings,mode",
    [
        ({}, "shared"),
        ({"explanation": "gradient"}, "inference"),
        ({"explanation": "gradient_x_input"}, "inference"),
        ({"explanation": "gradcam", "explanation_mode": "inference"}, "inference"),
    ],
)
def test_auto_explanation_mode_shares_the_training_pass_only_for_gradcam(settings, mode):
    assert methods.build("introspective", models.small_cnn((8, 8, 3), 4), settings).explanation_mode == mode
