"""A method wrapper saves and loads whole: `model.save("x.keras")` and `keras.models.load_model` with no
custom objects give the same class, hyper-parameters, weights (per-example stores included) and
optimizer state, the same predictions, and training goes on from where it stopped."""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from introspective_tf import methods, models

SHAPE, CLASSES, NUM_TRAIN, BATCH = (16, 16, 3), 10, 8, 4
NON_DEFAULT = {  # a setting other than the default, so a round trip that dropped it would show
    "standard": {},
    "introspective": {"alpha": 0.5, "target_true_mass": 0.8},
    "label_smoothing": {"smoothing": 0.2},
    "confidence_penalty": {"penalty": 0.3},
    "kd": {"alpha": 0.7},
    "dml": {"peers": 3},
    "pskd": {"alpha": 0.6},
    "tfkd_reg": {"multiplier": 10.0},
    "pskd_explained": {"similarity_temperature": 0.2},
    "online_label_smoothing": {"alpha": 0.4},
}


def backbone() -> keras.Model:
    return models.build("small_cnn", SHAPE, CLASSES)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("teacher") / "model.keras"
    backbone().save(path)
    return str(path)


IMAGES = np.random.default_rng(0).uniform(0, 255, (NUM_TRAIN, *SHAPE)).astype("float32")


def data(trainer) -> tf.data.Dataset:
    labels = np.arange(NUM_TRAIN) % CLASSES
    x = (IMAGES, np.arange(NUM_TRAIN)) if trainer.needs_example_index else IMAGES
    return tf.data.Dataset.from_tensor_slices((x, labels)).batch(BATCH)


def trained(method: str, teacher: str):
    hparams = {**NON_DEFAULT[method], **({"teacher": teacher} if method == "kd" else {})}
    keras.utils.set_random_seed(0)
    trainer = methods.build(method, backbone(), hparams)
    trainer.plan(num_train=NUM_TRAIN, steps_per_epoch=NUM_TRAIN // BATCH, epochs=3)
    trainer.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), run_eagerly=True)  # no tracing: quick
    trainer.fit(data(trainer), epochs=2, verbose=0)
    return trainer, hparams


def test_every_method_is_covered():
    assert set(NON_DEFAULT) == set(methods.METHODS)


@pytest.mark.slow
@pytest.mark.parametrize("method", list(methods.METHODS))
def test_a_method_round_trips_and_trains_on(method, teacher, tmp_path):
    trainer, hparams = trained(method, teacher)
    path = str(tmp_path / "mine.keras")
    trainer.save(path)
    loaded = keras.models.load_model(path)

    assert type(loaded) is type(trainer)
    resolved = methods.resolve(method, hparams)
    assert loaded.get_config()["hyperparameters"] == resolved == trainer.get_config()["hyperparameters"]
    assert [v.path for v in loaded.weights] == [v.path for v in trainer.weights]
    for mine, theirs in zip(trainer.weights, loaded.weights):  # stores (PS-KD's, OLS's) included
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)
    assert int(loaded.optimizer.iterations) == int(trainer.optimizer.iterations) == 4
    for mine, theirs in zip(trainer.optimizer.variables, loaded.optimizer.variables):  # momentum too
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
    np.testing.assert_allclose(loaded.predict(IMAGES, verbose=0), trainer.predict(IMAGES, verbose=0), atol=1e-6)

    # Training on: the loaded copy takes the same third epoch as the original.
    trainer.fit(data(trainer), epochs=3, initial_epoch=2, verbose=0)
    loaded.fit(data(loaded), epochs=3, initial_epoch=2, verbose=0)
    assert int(loaded.optimizer.iterations) == 6
    for mine, theirs in zip(trainer.backbone.weights, loaded.backbone.weights):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), atol=1e-5, err_msg=mine.path)


@pytest.mark.slow
def test_a_new_process_loads_it_with_the_package_imported_and_no_custom_objects(teacher, tmp_path):
    trainer, _ = trained("pskd", teacher)
    path = tmp_path / "pskd.keras"
    trainer.save(path)
    stored = trainer.predictions.numpy()
    np.save(tmp_path / "store.npy", stored)
    code = (
        "import sys, keras, numpy as np, introspective_tf\n"
        f"m = keras.models.load_model({str(path)!r})\n"
        f"assert type(m).__name__ == 'ProgressiveSelfKD', type(m)\n"
        f"np.testing.assert_array_equal(m.predictions.numpy(), np.load({str(tmp_path / 'store.npy')!r}))\n"
        "print('loaded', m.alpha)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded 0.6" in done.stdout
    assert stored[:, :].sum() > 0  # the store was written: an all-zero store would prove nothing
