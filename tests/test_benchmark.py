"""The benchmark's variants: `method:settings+timing` parses into its parts, and the explanation-images
timings run what they say (a step and an epoch end that does not draw; one drawn epoch)."""

import os

import keras
import numpy as np
import pytest

from introspective_tf import methods, models
from introspective_tf.errors import ConfigError
from introspective_tf.tools import benchmark


def test_a_variant_parses_into_method_settings_and_timing():
    assert benchmark._parse_variant("standard") == ("standard", {}, "")
    assert benchmark._parse_variant("introspective:alpha=0.5;num_probes=2+explanation_images") == (
        "introspective",
        {"alpha": "0.5", "num_probes": "2"},
        "explanation_images",
    )
    with pytest.raises(ConfigError, match=r"unknown timing '\+slowly' \(known: explanation_images, "):
        benchmark._parse_variant("standard+slowly")


def test_the_explanation_images_timings_draw_only_when_they_say(tmp_path):
    keras.utils.set_random_seed(0)
    trainer = methods.build("standard", models.build("small_cnn", (32, 32, 3), 10))
    trainer.compile(optimizer=keras.optimizers.SGD(0.01), run_eagerly=True)
    rng = np.random.default_rng(0)
    images, labels = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32"), np.arange(8) % 10
    before = [w.numpy().copy() for w in trainer.backbone.weights]

    benchmark._timed_step(trainer, images, labels, "explanation_images", str(tmp_path / "between"))()
    assert not os.path.exists(tmp_path / "between")  # an epoch end between logging epochs writes nothing
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, trainer.backbone.weights))  # it stepped

    benchmark._timed_step(trainer, images, labels, "explanation_images_drawn", str(tmp_path / "drawn"))()
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "drawn"))
