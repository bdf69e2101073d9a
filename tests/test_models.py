import keras
import numpy as np
import pytest
import tensorflow as tf

from introspective_tf import explanations, export, methods, models
from introspective_tf.errors import ConfigError

# The knowledge-distillation backbone zoo (RepDistiller's CIFAR models).
ZOO = ("wrn16_2", "wrn40_2", "wrn28_10", "vgg8", "vgg13", "mobilenetv2", "resnet8x4", "resnet32x4")


# small_cnn max-pools its last block before the global pooling (left as it is: finished runs use it).
BETWEEN_LAST_BLOCK_AND_POOL = {"small_cnn": ["pool2"]}


BIG = ("wrn28_10", "resnet110", "mobilenetv2", "wrn40_2", "resnet32x4")  # seconds to build: the full suite only


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow if n in BIG else ()) for n in sorted(models.MODELS)]
)
def test_every_model_returns_logits_and_names_its_last_block(name):
    model = models.build(name, (32, 32, 3), num_classes=7)
    assert model.output_shape == (None, 7)
    assert model.get_layer("last_conv_block") is not None
    assert model.layers[-1].activation.__name__ == "linear"
    # Grad-CAM's default layer: its output is a cut of the graph followed only by the global average
    # pooling and the linear layer, so Grad-CAM there equals CAM.
    head = explanations.head_above(model, "last_conv_block")
    assert head is not None
    assert [layer.name for layer in head.layers[1:]] == [*BETWEEN_LAST_BLOCK_AND_POOL.get(name, []), "pool", "logits"]
    assert isinstance(model.get_layer("pool"), keras.layers.GlobalAveragePooling2D)


def test_resnet20_has_the_published_size():
    # He et al. (2016) report 0.27M parameters; option-B projections add a few thousand.
    params = models.build("resnet20", (32, 32, 3), num_classes=10).count_params()
    assert 0.26e6 < params < 0.29e6


def _images():
    return np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32"), np.array([1, 7], "int32")


# Published sizes: (classes, parameter count). PyTorch counts the trainable parameters only: Keras'
# count_params() adds BatchNorm's moving mean and variance (non-trainable weights), so the trainable
# weights are compared.
PUBLISHED_SIZES = {
    # Zagoruyko & Komodakis (2016) report 36.5M at CIFAR-10; osmr/imgclsmob (pytorch/README.md, CIFAR-10
    # table) counts its WRN-28-10 at 36,479,194.
    "wrn28_10": (10, 36_479_194),
    # Heo et al., "A Comprehensive Overhaul of Feature Distillation" (ICCV 2019), CIFAR-100 setting (c) in
    # clovaai/overhaul-distillation's README: WRN 16-2, 0.70M.
    "wrn16_2": (100, 0.70e6),
    # The others: RepDistiller's PyTorch models at 100 classes (HobbitLong/RepDistiller models/wrn.py,
    # resnet.py, vgg.py, mobilenetv2.py), summed layer by layer from that code: no printed figure was found
    # to cite. They round to the figures KD papers quote (2.26M, 1.23M, 7.43M, 3.97M, 9.46M, 0.81M).
    "wrn40_2": (100, 2_255_156),
    "resnet8x4": (100, 1_233_540),
    "resnet32x4": (100, 7_433_860),
    "vgg8": (100, 3_965_028),  # incl. 1,472 conv biases, dropped here as BatchNorm follows every conv
    "vgg13": (100, 9_462_180),  # incl. 2,944 conv biases, likewise
    "mobilenetv2": (100, 812_836),  # mobile_half: width 0.5
}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow if n in BIG else ()) for n in sorted(PUBLISHED_SIZES)]
)
def test_zoo_models_have_the_published_size_and_run(name):
    classes, published = PUBLISHED_SIZES[name]
    model = models.build(name, (32, 32, 3), num_classes=classes)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert abs(trainable - published) / published < 0.02, (trainable, published)  # rounding of the figure, conv biases
    assert model.count_params() > trainable  # the BatchNorm moving statistics
    logits = model(_images()[0], training=False).numpy()  # the only run of WRN-28-10 (36M parameters)
    assert logits.shape == (2, classes) and np.all(np.isfinite(logits))


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory):
    """A small_cnn teacher for kd (32x32 images, 10 classes)."""
    path = tmp_path_factory.mktemp("teacher") / "model.keras"
    models.small_cnn((32, 32, 3), num_classes=10).save(path)
    return str(path)


# The shallowest of each family: wrn40_2, vgg13 and resnet32x4 are the same builders (wide_resnet, cifar_vgg,
# cifar_resnet) with more blocks of the same layers, so a method's step and the export run the same code on
# them; their sizes and forward passes are checked above. WRN-28-10: 36M parameters, too slow on CPU.
TRAINED_ZOO = ("wrn16_2", "vgg8", "mobilenetv2", "resnet8x4")


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINED_ZOO)
def test_zoo_model_trains_with_every_method_and_exports(name, teacher_path, tmp_path):
    images, labels = _images()
    keras.utils.set_random_seed(0)
    backbone = models.build(name, (32, 32, 3), num_classes=10, weight_decay=5e-4)
    assert len(backbone.losses) == sum(w.path.endswith("/kernel") for w in backbone.trainable_weights)  # depthwise too
    before = backbone.trainable_weights[0].numpy()
    for method in methods.METHODS:  # one SGD step each, on the same backbone
        trainer = methods.build(method, backbone, {"teacher": teacher_path} if method == "kd" else {})
        trainer.plan(num_train=len(labels), steps_per_epoch=1, epochs=1)
        # Eagerly: tracing each method's train step costs ~3 s per deep backbone on this CPU, the step
        # itself ~0.5 s. The methods' graph-mode steps are tested with small_cnn elsewhere.
        trainer.compile(optimizer="sgd", run_eagerly=True)
        inputs = (images, np.arange(len(labels), dtype="int32")) if trainer.needs_example_index else images
        logs = trainer.train_on_batch(inputs, labels, return_dict=True)
        assert np.isfinite(logs["loss"]), method
    assert not np.array_equal(before, backbone.trainable_weights[0].numpy())

    path = export.export_classifier(backbone, str(tmp_path / "export"))
    serve = tf.saved_model.load(path).signatures[export.SIGNATURE]
    probabilities = serve(images=tf.constant(images))[export.OUTPUT_NAME].numpy()
    assert np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    # Stock Keras layers only, so model.keras loads without custom objects (dml's clone_model has already
    # rebuilt the backbone from its config).
    assert all(type(layer).__module__.startswith("keras.") for layer in backbone.layers)


def test_weight_decay_adds_regularisation_losses():
    assert models.build("small_cnn", (32, 32, 3), 10, weight_decay=5e-4).losses
    assert not models.build("small_cnn", (32, 32, 3), 10).losses


def test_bad_names():
    with pytest.raises(ConfigError, match="unknown model") as error:
        models.build("vgg", (32, 32, 3), 10)
    assert all(name in str(error.value) for name in ZOO)
    with pytest.raises(ValueError, match="6n"):
        models.cifar_resnet(21)
    with pytest.raises(ValueError, match="6n"):
        models.wide_resnet(18, 2)
