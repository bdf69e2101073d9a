"""Bring your own Keras model: every method wraps a model that is not one of this project's backbones
with no explanation argument (Grad-CAM finds the last spatial feature map before the logits, in nested
models too), trains a step and exports; a model that outputs probabilities, or has nothing Grad-CAM
can explain at, stops with one line that says what to do."""

import json
import os
import subprocess
import sys

import background
import keras
import numpy as np
import pytest
import tensorflow as tf

from introspective_tf import explanations, export, methods
from introspective_tf.errors import ConfigError

SHAPE, CLASSES, BATCH = (32, 32, 3), 10, 4


def sequential() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Conv2D(8, 3, name="conv"),
            keras.layers.ReLU(name="features"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(CLASSES, name="logits"),
        ],
        name="mine",
    )


def nested_application() -> keras.Model:
    """A functional model around a `keras.applications` feature extractor (a layer of its own)."""
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=SHAPE, alpha=0.35)
    inputs = keras.Input(SHAPE)
    features = base(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(pooled), name="with_backbone")


def application(name: str) -> keras.Model:
    settings = dict(weights=None, input_shape=SHAPE, classes=CLASSES, classifier_activation=None)
    if name == "MobileNetV2":
        settings["alpha"] = 0.35
    return getattr(keras.applications, name)(**settings)


def hyperparameters(method: str, tmp_path_factory) -> dict:
    if method != "kd":
        return {}
    teacher = tmp_path_factory.mktemp("teacher") / "model.keras"
    sequential().save(teacher)  # any model of the same input and classes
    return {"teacher": str(teacher)}


def one_step(model: keras.Model, method: str, hparams: dict) -> dict:
    trainer = methods.build(method, model, hparams)
    trainer.plan(num_train=BATCH, steps_per_epoch=1, epochs=1)
    trainer.compile(optimizer=keras.optimizers.SGD(0.01), run_eagerly=True)  # one step: no tracing
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (BATCH, *SHAPE)).astype("float32")
    labels = np.arange(BATCH) % CLASSES
    x = (images, np.arange(BATCH)) if trainer.needs_example_index else images
    logs = trainer.train_on_batch(x, labels, return_dict=True)
    assert all(np.isfinite(v) for v in logs.values()), logs
    return logs


def exports(model: keras.Model, path) -> None:
    export.export_classifier(model, str(path))
    images = np.random.default_rng(1).uniform(0, 255, (2, *SHAPE)).astype("float32")
    served = keras.layers.TFSMLayer(str(path))(images)
    np.testing.assert_allclose(served, tf.nn.softmax(model(images, training=False)), atol=1e-5)


def test_the_layer_is_found_in_a_sequential_model_and_the_choice_is_said_once(capsys):
    model = sequential()
    assert explanations.feature_map_layers(model) == ["features", "conv"]  # not the rescaled input
    explainer = explanations.explainer("gradcam", model)
    assert explainer.layer == "features"
    assert capsys.readouterr().out.count("at layer 'features'") == 1
    maps = explainer.explain(np.zeros((2, *SHAPE), "float32"))
    assert maps.shape == (2, CLASSES, 30, 30)


def test_the_default_name_is_kept_where_it_exists_and_a_named_layer_is_used_as_given(capsys):
    model = sequential()
    assert explanations.resolve_layer(model, "conv") == ("conv", False)
    assert explanations.resolve_layer(model, "auto") == ("features", True)
    assert explanations.explainer("gradcam", model, layer="conv").layer == "conv"
    assert capsys.readouterr().out == ""  # nothing found automatically, nothing said


@pytest.mark.parametrize("method", list(methods.METHODS))
def test_every_method_trains_a_sequential_model_without_an_explanation_argument(method, tmp_path_factory):
    one_step(sequential(), method, hyperparameters(method, tmp_path_factory))


def test_no_feature_map_names_the_way_out():
    flat = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(CLASSES)], name="flat")
    with pytest.raises(ConfigError, match="no spatial feature map .* use explanation=gradient") as err:
        methods.build("introspective", flat)
    assert "\n" not in str(err.value)
    methods.build("introspective", flat, {"explanation": "gradient"})  # input gradients need no feature map


def test_an_unknown_layer_lists_the_candidates():
    with pytest.raises(ConfigError, match=r"no layer 'nope' .* \(features, conv\) or to auto"):
        methods.build("introspective", sequential(), {"explanation_layer": "nope"})


@pytest.mark.parametrize("method", ["standard", "introspective"])
def test_a_softmax_output_is_refused_for_every_method(method):
    softmax_dense = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(3, "softmax")])
    softmax_layer = keras.Sequential(
        [keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(3), keras.layers.Softmax()]
    )
    for model in (softmax_dense, softmax_layer):
        with pytest.raises(ConfigError, match="ends in a softmax: the methods learn from logits"):
            methods.build(method, model)


@pytest.mark.slow
def test_a_nested_keras_application_is_explained_at_its_output_by_every_method(tmp_path_factory, tmp_path):
    model = nested_application()
    inner = model.layers[1].name
    assert explanations.feature_map_layers(model)[0] == inner
    for method in methods.METHODS:
        one_step(model, method, hyperparameters(method, tmp_path_factory))
    exports(model, tmp_path / "export")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, layer", [("MobileNetV2", "out_relu"), ("ResNet50V2", "post_relu"), ("EfficientNetB0", "top_activation")]
)
def test_keras_applications_are_explained_at_their_last_feature_map_and_train(name, layer, tmp_path_factory):
    """Every method on the smallest application; on the larger ones introspection, the method whose step
    depends on the layer found (pskd_explained explains with the same Explainer; the others reach a model
    only through its call, and train on the Sequential model, the nested application and MobileNetV2).
    Exporting is the same code for any model: tested on the nested application (an application inside a
    model of yours) and on every backbone of the zoo (test_models.py), not again on each application."""
    model = application(name)
    assert explanations.resolve_layer(model, explanations.DEFAULT_LAYER) == (layer, True)
    for method in methods.METHODS if name == "MobileNetV2" else ["introspective"]:
        one_step(model, method, hyperparameters(method, tmp_path_factory))


# README's block, as written, after the block before it made `data`, in a Python process of its own; what
# it left, read back in that process.
_README_SNIPPET_RUNNER = """
import json, pathlib, re, sys

import keras

import introspective_tf as itf
from introspective_tf import training

readme, dataset = pathlib.Path(sys.argv[1]).read_text(), sys.argv[2]
code = next(block for block in re.findall(r"```python\\n(.*?)```", readme, re.S) if "keras.applications" in block)
data = training.data.load(dataset, batch_size=8)
exec(code, {"keras": keras, "itf": itf, "data": data})
loaded = keras.models.load_model("mine.keras")
print(json.dumps({
    "type": type(loaded).__name__,
    "layer": loaded.explainer.layer,
    "iterations": int(loaded.optimizer.iterations),
    "exported": pathlib.Path("saved_models/mine/saved_model.pb").is_file(),
}))
"""


@background.fixture
def readme_snippet_run(folder):
    """The README's "Your own model and image folder" block run in `folder` by a Python process, in the
    background (tests/background.py): its CompletedProcess."""
    from conftest import MINI, REPO

    if not (MINI / "train").is_dir():
        pytest.skip(f"real data not found at {MINI}")
    command = [sys.executable, "-c", _README_SNIPPET_RUNNER, str(REPO / "README.md"), f"folder:{MINI}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_readme_snippet_trains_an_application_on_a_folder_and_exports(readme_snippet_run):
    assert readme_snippet_run.returncode == 0, readme_snippet_run.stderr[-3000:]
    left = json.loads(readme_snippet_run.stdout.splitlines()[-1])
    assert left == {"type": "Introspective", "layer": "out_relu", "iterations": 20, "exported": True}
