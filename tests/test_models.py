import pytest

from introspective_tf import models
from introspective_tf.errors import ConfigError


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_model_returns_logits_and_names_its_last_block(name):
    model = models.build(name, (32, 32, 3), num_classes=7)
    assert model.output_shape == (None, 7)
    assert model.get_layer("last_conv_block") is not None
    assert model.layers[-1].activation.__name__ == "linear"


def test_resnet20_has_the_published_size():
    # He et al. (2016) report 0.27M parameters; option-B projections add a few thousand.
    params = models.build("resnet20", (32, 32, 3), num_classes=10).count_params()
    assert 0.26e6 < params < 0.29e6


def test_weight_decay_adds_regularisation_losses():
    assert models.build("small_cnn", (32, 32, 3), 10, weight_decay=5e-4).losses
    assert not models.build("small_cnn", (32, 32, 3), 10).losses


def test_bad_names():
    with pytest.raises(ConfigError, match="unknown model"):
        models.build("vgg", (32, 32, 3), 10)
    with pytest.raises(ValueError, match="6n"):
        models.cifar_resnet(21)
