"""Explanation figures: the soft-target bars are the target by its definition, the maps are sane, explain.py works."""

import dataclasses
import os
import sys

import keras
import matplotlib.image
import numpy as np
import pytest
import references
from commands import run_concurrently
from conftest import MINI, REPO

from introspective_tf import ConfigError, export, methods, models
from introspective_tf.tools import visualize


@pytest.fixture(scope="module")
def model_and_batch():
    """A small_cnn trained for a few steps on real images, and 4 real test images with labels."""
    if not (MINI / "train").is_dir():
        pytest.skip("real data not found")
    from introspective_tf.training import data as data_lib

    keras.utils.set_random_seed(0)
    data = data_lib.load(f"folder:{MINI}", batch_size=50, augment=False)
    backbone = models.build("small_cnn", data.image_shape, data.num_classes)
    method = methods.build("standard", backbone)
    method.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    method.fit(data.train, epochs=1, steps_per_epoch=10, shuffle=False, verbose=0)  # the data set shuffles
    images, labels = next(iter(data.eval))
    return backbone, images[:4].numpy(), labels[:4].numpy(), data.class_names


@pytest.mark.parametrize(
    "soft_target,tau,epsilon,explanation", [("softmax", 0.1, 0.1, "gradcam"), ("smoothing", 0.5, 0.2, "gradient")]
)
def test_soft_target_bars_are_the_target_by_its_definition(model_and_batch, soft_target, tau, epsilon, explanation):
    """s, q and p against references written out here: every class's explanation of a separate inference-mode
    pass (Grad-CAM with one tape.gradient per class at last_conv_block, or input gradients with one tape per
    example and class), their cosine to the true class's and the softmax or smoothing target, in numpy."""
    backbone, images, labels, _ = model_and_batch
    if explanation == "gradcam":
        explained = references.per_class_gradcam_reference(backbone, images)
    else:
        explained = references.per_class_input_gradients_reference(backbone, images)
    similarity = references.similarity_to_true_class(explained.numpy(), labels, "cosine")
    expected = references.soft_target(similarity, labels, soft_target, tau, epsilon)
    shown = visualize.explain(
        backbone,
        images,
        labels,
        similarity_temperature=tau,
        soft_target=soft_target,
        epsilon=epsilon,
        competitors=2,
        explanation=explanation,
    )
    np.testing.assert_allclose(shown.similarity, similarity, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(shown.soft_target, expected, rtol=1e-4, atol=1e-6)
    logits = backbone(images, training=False).numpy().astype(np.float64)
    np.testing.assert_allclose(shown.probabilities, references.softmax(logits), rtol=1e-5, atol=1e-6)


def test_shown_classes_are_the_true_class_then_the_top_rivals(model_and_batch):
    backbone, images, labels, _ = model_and_batch
    explained = visualize.explain(backbone, images, labels, competitors=3)
    assert explained.shown_classes.shape == (4, 4) and explained.maps.shape == (4, 4, 32, 32)
    np.testing.assert_array_equal(explained.shown_classes[:, 0], labels)
    for i, row in enumerate(explained.probabilities):
        rivals = [c for c in np.argsort(-row) if c != labels[i]][:3]
        np.testing.assert_array_equal(explained.shown_classes[i, 1:], rivals)


@pytest.mark.parametrize("explainer", visualize.EXPLAINERS)
def test_maps_are_normalised_and_class_specific(model_and_batch, explainer):
    backbone, images, labels, _ = model_and_batch
    maps = visualize.explanation_maps(
        backbone, images, np.stack([labels, (labels + 1) % 10], 1), explainer, smooth_samples=3
    )
    assert maps.shape == (4, 2, 32, 32) and maps.min() >= 0.0 and maps.max() <= 1.0
    assert np.all(maps.reshape(8, -1).std(axis=1) > 0.01)  # not blank
    assert np.abs(maps[:, 0] - maps[:, 1]).mean() > 1e-3  # a different class gets a different map


@pytest.mark.slow
def test_plot_writes_a_readable_png(model_and_batch, tmp_path):
    backbone, images, labels, class_names = model_and_batch
    path = visualize.plot(visualize.explain(backbone, images, labels), class_names, str(tmp_path / "e.png"))
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 4 * 150 and image.shape[1] > 800 and image[..., :3].std() > 0.05


def test_load_classifier_accepts_every_kind_of_saved_model(model_and_batch, tmp_path):
    backbone, images, *_ = model_and_batch
    backbone.save(tmp_path / "model.keras")
    export.export_classifier(backbone, str(tmp_path / "export"))
    for path in (tmp_path / "model.keras", tmp_path, tmp_path / "export"):
        np.testing.assert_allclose(visualize.load_classifier(str(path))(images), backbone(images), rtol=1e-5, atol=1e-5)
    os.remove(tmp_path / "export" / "assets.extra" / export.KERAS_MODEL)
    with pytest.raises(ConfigError, match="has no assets.extra/model.keras"):
        visualize.load_classifier(str(tmp_path / "export"))
    with pytest.raises(ConfigError, match="no Keras model at"):
        visualize.load_classifier(str(tmp_path / "nothing-here"))


@pytest.fixture(scope="module")
def explain_py(model_and_batch, tmp_path_factory):
    """explain.py as a user runs it, twice at once (tests/commands.py): {"figure": (result, output) of
    a figure from an export, "refused": (result, tmp folder) of a 7-class model on the 10-class data}."""
    backbone, *_ = model_and_batch
    figure, refused = tmp_path_factory.mktemp("explain_py"), tmp_path_factory.mktemp("explain_py_refused")
    export.export_classifier(backbone, str(figure / "export"))
    keras.utils.set_random_seed(0)
    models.build("small_cnn", (32, 32, 3), 7).save(refused / "model.keras")
    # One explainer: explain.py passes --explainer through to visualize.explain, whose saliency and
    # smoothgrad maps (and their warnings) are tested in-process above and below.
    commands = [
        [
            sys.executable,
            str(REPO / "explain.py"),
            f"--model_path={figure / 'export'}",
            f"--dataset=folder:{MINI}",
            "--num_images=3",
            "--explainer=gradcam",
            f"--output={figure / 'explanations.png'}",
        ],
        [
            sys.executable,
            str(REPO / "explain.py"),
            f"--model_path={refused / 'model.keras'}",
            f"--dataset=folder:{MINI}",
            f"--output={refused / 'x.png'}",
        ],
    ]
    results = run_concurrently(commands, cwd=REPO, env=dict(os.environ), timeout=300)
    return {"figure": (results[0], figure / "explanations.png"), "refused": (results[1], refused)}


@pytest.mark.slow
def test_explain_py_draws_a_figure_from_an_export(explain_py):
    result, output = explain_py["figure"]
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == f"wrote {output}\n" and result.stderr == ""  # no library warning, no source line
    assert matplotlib.image.imread(output).shape[0] > 3 * 150


@pytest.mark.parametrize("explainer", visualize.EXPLAINERS)
def test_the_maps_raise_no_warning(model_and_batch, explainer):
    """tf-keras-vis calls the model on a list of inputs, which Keras would warn about on every figure."""
    import warnings

    backbone, images, labels, _ = model_and_batch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        visualize.explanation_maps(backbone, images[:2], np.stack([labels[:2]] * 2, 1), explainer, smooth_samples=2)
    shown = [w for w in caught if not issubclass(w.category, DeprecationWarning)]  # hidden by default
    assert [str(w.message) for w in shown] == []


@pytest.mark.slow
def test_explain_py_refuses_a_model_for_other_data_with_one_line(explain_py):
    result, tmp_path = explain_py["refused"]
    assert result.returncode == 1
    assert "error: the model has 7 classes but" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("rows", [1, pytest.param(8, marks=pytest.mark.slow), pytest.param(16, marks=pytest.mark.slow)])
def test_figure_is_readable_at_1_to_16_images(model_and_batch, rows):
    """The title overlaps no panel title, every map row has a colour bar, and a caption says what p and q are."""
    import matplotlib.pyplot as plt

    backbone, images, labels, class_names = model_and_batch
    explained = visualize.explain(backbone, images, labels, explainer="gradcam")
    repeat = -(-rows // len(labels))
    explained = visualize.Explained(
        *[np.concatenate([getattr(explained, f.name)] * repeat)[:rows] for f in dataclasses.fields(explained)]
    )
    fig = visualize.figure(explained, class_names, explainer="gradcam")
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        (title,) = [t for t in fig.texts if t.get_text().startswith("Grad-CAM explanations")]
        (caption,) = [t for t in fig.texts if t.get_text().startswith("p (blue bars): the model's prediction")]
        assert "q (orange bars): the soft target" in caption.get_text()
        figure_box = fig.bbox
        title_box, caption_box = title.get_window_extent(renderer), caption.get_window_extent(renderer)
        panels = [axis for axis in fig.axes if axis.get_title()]
        assert len(panels) == rows * (2 + 2)  # image and three maps titled per row
        for axis in panels:
            assert not title_box.overlaps(axis.title.get_window_extent(renderer)), axis.get_title()
        for axis in fig.axes:
            assert not caption_box.overlaps(axis.get_tightbbox(renderer)), axis.get_title()
            assert not title_box.overlaps(axis.get_tightbbox(renderer)), axis.get_title()
        for box in (title_box, caption_box):
            assert (
                figure_box.x0 <= box.x0
                and box.x1 <= figure_box.x1
                and figure_box.y0 <= box.y0
                and box.y1 <= figure_box.y1
            )
        maps = [axis for axis in panels if axis.get_title().startswith(("true:", "rival"))]
        assert len(maps) == rows * 3
        for row in range(rows):  # one colour bar per row, and it is the scale of every map in the row
            heats = [axis.images[-1] for axis in maps[3 * row : 3 * row + 3]]
            (bar,) = [heat.colorbar for heat in heats if heat.colorbar is not None]
            assert bar.ax in fig.axes and (bar.norm.vmin, bar.norm.vmax) == (0, 1)
            assert all(heat.cmap.name == bar.cmap.name and (heat.norm.vmin, heat.norm.vmax) == (0, 1) for heat in heats)
    finally:
        plt.close(fig)
