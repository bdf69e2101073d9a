"""TensorBoard explanation images (`--explanation_images_every`): what is drawn, when, and that drawing
changes nothing a run learns or logs.

The maps and targets are checked against a numpy reference written here: at a layer whose head is
pooling and one dense layer, the Grad-CAM weights of class c are the dense kernel's column c (up to a
positive factor), so each class's map is relu(A w_c), s its cosine to the true class's, q = softmax(s / tau).
The short real runs read the event files back with TensorBoard's own reader.
"""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from introspective_tf import methods, models
from introspective_tf.errors import ConfigError
from introspective_tf.methods.introspective import Introspective
from introspective_tf.training import experiment
from introspective_tf.training import explanation_images as ei

CLASSES = 4
IMAGE_TAGS = [f"{kind}/example_{i}" for kind in ("explanations", "soft_target") for i in range(ei.NUM_EXAMPLES)]


def _backbone():
    keras.utils.set_random_seed(0)
    return models.build("small_cnn", (16, 16, 3), CLASSES)


def _batch(count=6):
    rng = np.random.default_rng(1)
    return rng.uniform(0, 255, (count, 16, 16, 3)).astype("float32"), np.array([0, 1, 2, 3, 1, 0][:count], "int32")


def _reference(backbone, images, labels, tau):
    """(maps [B, C, h, w], s, q) in numpy from the definitions (module docstring)."""
    features = keras.Model(backbone.inputs, backbone.get_layer("last_conv_block").output)(images, training=False)
    kernel = backbone.get_layer("logits").kernel.numpy()  # [k, C]
    maps = np.maximum(np.einsum("bhwk,kc->bchw", np.asarray(features, np.float64), kernel), 0.0)
    flat = maps.reshape(len(images), CLASSES, -1)
    true = flat[np.arange(len(images)), labels]
    norms = np.linalg.norm(flat, axis=-1) * np.linalg.norm(true, axis=-1)[:, None]
    s = np.einsum("bcn,bn->bc", flat, true) / np.maximum(norms, 1e-12)
    logits = s / tau
    q = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return maps, s, q / q.sum(axis=-1, keepdims=True)


def _normalised(maps):
    peak = maps.reshape(*maps.shape[:2], -1).max(axis=-1)[..., None, None]
    return maps / np.where(peak > 0, peak, 1.0)


def test_an_introspective_run_draws_its_own_target_and_leaves_its_metric_alone():
    backbone = _backbone()
    method = methods.build("introspective", backbone, {"similarity_temperature": 0.3})
    images, labels = _batch()
    assert ei.explaining_method(method) is method
    drawn = ei.explain_batch(method, images, labels)
    maps, s, q = _reference(backbone, images, labels, tau=0.3)
    np.testing.assert_allclose(_normalised(drawn["maps"]), _normalised(maps), atol=1e-5)
    np.testing.assert_allclose(drawn["similarity"], s, atol=1e-5)
    np.testing.assert_allclose(drawn["target"], q, atol=1e-5)
    np.testing.assert_allclose(drawn["true_mass"], q[np.arange(6), labels], atol=1e-5)
    assert 0.3 < drawn["true_mass"].min() and drawn["true_mass"].max() < 0.99  # a soft target: a real test of q
    assert float(method.true_mass_tracker.count.numpy()) == 0.0  # the training metric saw nothing


def test_another_method_draws_the_default_introspective_target_of_its_backbone():
    backbone = _backbone()
    method = methods.build("standard", backbone)
    introspective = ei.explaining_method(method)
    assert type(introspective) is Introspective and introspective.backbone is backbone
    assert methods.resolve("introspective")["similarity_temperature"] == 0.01
    images, labels = _batch()
    drawn = ei.explain_batch(introspective, images, labels)
    _, s, q = _reference(backbone, images, labels, tau=0.01)
    np.testing.assert_allclose(drawn["similarity"], s, atol=1e-5)
    np.testing.assert_allclose(drawn["target"], q, atol=1e-4)
    probabilities = tf.nn.softmax(backbone(images, training=False)).numpy()
    np.testing.assert_allclose(drawn["probabilities"], probabilities, atol=1e-6)


def test_input_gradient_maps_are_the_largest_absolute_channel():
    backbone = _backbone()
    method = methods.build("introspective", backbone, {"explanation": "gradient"})
    images, labels = _batch(2)
    drawn = ei.explain_batch(method, images, labels)
    image = tf.constant(images[:1])
    with tf.GradientTape() as tape:
        tape.watch(image)
        logit = backbone(image, training=False)[0, 2]
    expected = np.abs(tape.gradient(logit, image).numpy()[0]).max(axis=-1)
    assert drawn["maps"].shape == (2, CLASSES, 16, 16)
    np.testing.assert_allclose(drawn["maps"][0, 2], expected, rtol=1e-4, atol=1e-9)


def test_the_shown_classes_are_the_true_one_then_the_two_most_similar():
    s = np.array([0.2, 1.0, 0.9, -0.5, 0.95])
    assert ei.shown_classes(s, 1) == [1, 4, 2]
    assert ei.shown_classes(np.array([1.0, 0.3, 0.3]), 0) == [0, 1, 2]  # ties: the lower class first


def test_pictures_are_rgb_uint8_of_one_size():
    rng = np.random.default_rng(0)
    drawn = {
        "maps": rng.uniform(0, 1, (2, 10, 8, 8)),
        "similarity": rng.uniform(-1, 1, (2, 10)),
        "target": rng.dirichlet(np.ones(10), 2),
        "probabilities": rng.dirichlet(np.ones(10), 2),
    }
    drawn["maps"][1] = 0.0  # an all-zero map draws as nothing, not as NaN
    images = rng.uniform(0, 255, (2, 32, 32, 3))
    names = [f"class{c}" for c in range(10)]
    panels = [ei.explanation_panel(images[i], 3, drawn, i, names) for i in range(2)]
    charts = [ei.soft_target_chart(3, drawn, i, names) for i in range(2)]
    for pictures in (panels, charts):
        assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[-1] == 3 for p in pictures)
        assert pictures[0].shape == pictures[1].shape and min(pictures[0].shape[:2]) >= 100
    assert panels[0].shape[1] > 2 * panels[0].shape[0]  # four tiles side by side
    assert len(np.unique(panels[0].reshape(-1, 3), axis=0)) > 100  # a picture, not a blank canvas
    many = {k: np.repeat(v, 10, axis=-1) if k != "maps" else v for k, v in drawn.items()}  # 100 classes
    assert ei.soft_target_chart(3, many, 0, []).shape[-1] == 3


def _callback(every, epochs):
    images, labels = _batch()
    callback = ei.ExplanationImages(methods.build("standard", _backbone()), images, labels, [], "unused", every)
    callback.set_params({"epochs": epochs})
    written = []
    callback.write = written.append  # what a logging epoch would draw, without drawing
    for epoch in range(epochs):
        callback.on_epoch_end(epoch)
    return written


@pytest.mark.parametrize(
    "every, steps", [(1, [0, 1, 2, 3, 4, 5]), (2, [0, 2, 4, 5]), (3, [0, 3, 5]), (5, [0, 5]), (10, [0, 5])]
)
def test_drawn_after_the_first_every_nth_and_the_last_epoch_and_never_between(every, steps):
    assert _callback(every, epochs=6) == steps


def test_a_negative_period_is_a_one_line_config_error():
    config = experiment.ExperimentConfig(explanation_images_every=-2)
    with pytest.raises(ConfigError, match=r"^explanation_images_every must be >= 0 \(0 = off\), not -2$"):
        config.validate()
    dataclasses.replace(config, explanation_images_every=0).validate()
    with pytest.raises(ValueError, match="every must be >= 1"):
        _callback(0, epochs=1)


def _events(log_dir):
    accumulator = event_accumulator.EventAccumulator(str(log_dir), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    return accumulator


def _image(event):
    width, height, png = tf.make_ndarray(event.tensor_proto)
    picture = tf.io.decode_png(png).numpy()
    assert picture.shape == (int(height), int(width), 3)
    return picture


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{(method, every): results} of short real runs (4 one-step epochs) on cifar10-mini."""
    from conftest import MINI

    if not (MINI / "train").is_dir():
        pytest.skip(f"real data not found at {MINI}")
    done = {}
    for method, every in (("introspective", 1), ("introspective", 0), ("pskd", 3), ("pskd", 0)):
        out = tmp_path_factory.mktemp(f"{method}-{every}")
        config = experiment.ExperimentConfig(
            dataset=f"folder:{MINI}",
            method=method,
            model="small_cnn",
            epochs=4,
            steps_per_epoch=1,
            batch_size=16,
            train_limit=32,
            output_dir=str(out / "run"),
            export_dir="none",
            verbose=0,
            explanation_images_every=every,
            hparams={"similarity_temperature": 0.5} if method == "introspective" else {},
        )
        done[method, every] = {"results": experiment.run(config), "logs": out / "run" / "logs"}
    return done


@pytest.mark.slow
@pytest.mark.parametrize("method, every, steps", [("introspective", 1, [0, 1, 2, 3]), ("pskd", 3, [0, 3])])
def test_a_real_run_logs_every_picture_and_the_histogram_at_the_drawn_epochs(runs, method, every, steps):
    events = _events(runs[method, every]["logs"] / "explanations")
    tags = events.Tags()["tensors"]
    assert sorted(tags) == sorted([*IMAGE_TAGS, "target_true_mass"])
    for tag in tags:
        assert [e.step for e in events.Tensors(tag)] == steps, tag
        plugin = "histograms" if tag == "target_true_mass" else "images"
        assert events.SummaryMetadata(tag).plugin_data.plugin_name == plugin
    for tag in IMAGE_TAGS:
        sizes = {_image(e).shape for e in events.Tensors(tag)}
        assert len(sizes) == 1 and min(next(iter(sizes))[:2]) >= 100
    for event in events.Tensors("target_true_mass"):
        buckets = tf.make_ndarray(event.tensor_proto)  # [bucket, (left, right, count)]
        assert buckets[:, 2].sum() == ei.NUM_EXAMPLES
        assert 0.0 <= buckets[:, 0].min() and buckets[:, 1].max() <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["introspective", "pskd"])
def test_drawing_changes_nothing_a_run_learns_or_logs_and_zero_draws_nothing(runs, method):
    drawn, plain = runs[method, 1 if method == "introspective" else 3], runs[method, 0]
    assert not (plain["logs"] / "explanations").exists()
    assert sorted(p.name for p in plain["logs"].iterdir()) == ["train", "validation"]
    for key in ("train_loss_history", "final_train_metrics", "eval_accuracy", "eval_loss", "eval_nll", "eval_ece"):
        assert drawn["results"][key] == plain["results"][key], key  # bit-identical, metrics included


@pytest.mark.slow
def test_train_py_names_a_negative_period_in_one_line(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    done = subprocess.run(
        [sys.executable, "train.py", "--explanation_images_every=-1", f"--output_dir={tmp_path / 'run'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "error: explanation_images_every must be >= 0 (0 = off), not -1"
    assert not (tmp_path / "run").exists()
