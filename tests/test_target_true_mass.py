"""`target_true_mass`: the similarity temperature solved in the graph so that the target's true-class mass
is the setting. References are numpy, written here from the definition q = softmax(s / tau), not from
the package."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from introspective_tf import explanations, methods, models
from introspective_tf.errors import ConfigError
from introspective_tf.methods.introspective import target_with_true_mass


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _reference_target(s, y, mass, per_example):
    """numpy, float64: bisection on beta = 1 / tau, where the true-class mass rises with beta."""
    s, rows = s.astype(np.float64), np.arange(len(y))

    def true_mass(beta):
        q = _softmax(s * (beta[:, None] if per_example else beta))
        return q[rows, y] if per_example else q[rows, y].mean()

    n = len(y) if per_example else 1
    low, high = np.zeros(n), np.full(n, 1e4)
    for _ in range(200):
        middle = (low + high) / 2
        rising = true_mass(middle if per_example else middle[0]) < mass
        low, high = np.where(rising, middle, low), np.where(rising, high, middle)
    beta = (low + high) / 2
    return _softmax(s * (beta[:, None] if per_example else beta[0]))


def _similarities(seed=0, batch=8, classes=10):
    rng = np.random.default_rng(seed)
    s = rng.uniform(-0.5, 0.99, (batch, classes)).astype("float32")
    y = rng.integers(0, classes, batch)
    s[np.arange(batch), y] = 1.0  # cosine: every explanation is most similar to itself
    return s, y


@pytest.mark.parametrize("scope", ["batch", "example"])
@pytest.mark.parametrize("mass", [0.95, 0.8, 0.6, 0.3])
def test_target_matches_a_hand_computed_softmax_at_the_solved_temperature(scope, mass):
    s, y = _similarities()
    got = target_with_true_mass(tf.constant(s), tf.constant(y), mass, scope).numpy()
    expected = _reference_target(s, y, mass, per_example=scope == "example")
    np.testing.assert_allclose(got, expected, atol=2e-5)
    true = got[np.arange(len(y)), y]
    if scope == "example":
        np.testing.assert_allclose(true, mass, atol=1e-5)
    else:
        assert abs(true.mean() - mass) < 1e-5
        assert true.std() > 0.01  # per batch, examples keep their own softness


def test_wrong_classes_keep_the_order_the_similarities_give_them():
    s, y = _similarities(seed=1)
    q = target_with_true_mass(tf.constant(s), tf.constant(y), 0.7, "batch").numpy()
    for row, label in zip(range(len(y)), y):
        wrong = [c for c in range(s.shape[1]) if c != label]
        assert list(np.argsort(q[row, wrong])) == list(np.argsort(s[row, wrong]))


def test_two_classes_have_a_closed_form_temperature():
    # C = 2: q_y = 1 / (1 + exp((s_c - s_y) / tau)) = m  <=>  tau = (s_y - s_c) / log(m / (1 - m)).
    s = np.array([[1.0, 0.2], [0.5, 1.0], [1.0, -0.4]], "float32")
    y = np.array([0, 1, 0])
    q = target_with_true_mass(tf.constant(s), tf.constant(y), 0.8, "example").numpy()
    tau = (1.0 - s[np.arange(3), 1 - y]) / np.log(0.8 / 0.2)
    expected_wrong = 1.0 / (1.0 + np.exp(1.0 / tau * (1.0 - s[np.arange(3), 1 - y])))
    np.testing.assert_allclose(q[np.arange(3), 1 - y], expected_wrong, atol=1e-5)
    np.testing.assert_allclose(q[np.arange(3), y], 0.8, atol=1e-5)


def test_mass_one_is_the_label_exactly():
    s, y = _similarities(seed=2)
    q = target_with_true_mass(tf.constant(s), tf.constant(y), 1.0, "batch").numpy()
    np.testing.assert_array_equal(q, np.eye(s.shape[1])[y])


def test_an_all_zero_true_map_gives_a_finite_uniform_target_and_the_rest_of_the_batch_the_mass():
    # cosine with an all-zero true-class map is 0 for every class: no tau separates the classes.
    s, y = _similarities(seed=3)
    s[0] = 0.0
    for scope in ("batch", "example"):
        q = target_with_true_mass(tf.constant(s), tf.constant(y), 0.8, scope).numpy()
        assert np.isfinite(q).all()
        np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(q[0], 0.1, atol=1e-6)
    np.testing.assert_allclose(q[1:][np.arange(7), y[1:]], 0.8, atol=1e-5)


def _backbone():
    keras.utils.set_random_seed(0)
    return models.build("small_cnn", (16, 16, 3), 4)


@pytest.mark.parametrize(
    "explanation", [pytest.param(e, marks=() if e == "gradcam" else pytest.mark.slow) for e in explanations.EXPLAINERS]
)
def test_every_explanation_kind_trains_with_the_mass_it_was_given(explanation):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (32, 16, 16, 3)).astype("float32")
    labels = rng.integers(0, 4, 32).astype("int32")
    model = methods.build("introspective", _backbone(), {"explanation": explanation, "target_true_mass": 0.7})
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    history = model.fit(images, labels, batch_size=8, epochs=2, verbose=0)
    assert history.history["target_true_mass"] == pytest.approx([0.7, 0.7], abs=1e-4)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize(
    "hparams, message",
    [
        ({"target_true_mass": 0.2}, r"target_true_mass must be 0 \(off\) or in \(1/C, 1\] = \(0.25, 1\]"),
        ({"target_true_mass": 1.5}, "target_true_mass must be"),
        ({"target_true_mass": 0.8, "similarity_temperature": 0.05}, "not both"),
        ({"target_true_mass": 0.8, "soft_target": "smoothing"}, "needs soft_target=softmax"),
        ({"target_true_mass": 0.8, "target_mass_scope": "epoch"}, "target_mass_scope must be one of"),
    ],
)
def test_bad_settings_are_one_line_config_errors(hparams, message):
    with pytest.raises(ConfigError, match=message):
        methods.build("introspective", _backbone(), hparams)


def test_giving_both_flags_is_an_error_even_at_the_default_temperature():
    from introspective_tf.training import run_flags

    with pytest.raises(ConfigError, match="line 3: give similarity_temperature or target_true_mass, not both"):
        run_flags.parse_run_line(
            ["--method=introspective", "--similarity_temperature=0.01", "--target_true_mass=0.8"], "line 3"
        )
    config = run_flags.parse_run_line(["--method=introspective", "--target_true_mass=0.8"], "line 3")
    assert config.hparams == {"target_true_mass": 0.8}


@pytest.mark.slow
def test_a_short_real_run_records_the_mass_it_was_given(tmp_path, mini_dataset):
    from introspective_tf.tools import compare
    from introspective_tf.training import experiment, run_flags

    out = tmp_path / "run"
    config = run_flags.parse_run_line(
        [
            f"--dataset={mini_dataset}",
            "--model=small_cnn",
            "--method=introspective",
            "--target_true_mass=0.8",
            "--epochs=2",
            "--steps_per_epoch=4",
            "--batch_size=32",
            f"--output_dir={out}",
            "--export_dir=none",
            "--verbose=0",
            "--explanation_images_every=0",  # drawn where it is tested (test_explanation_images.py)
        ],
        "test",
    )
    results = experiment.run(config)
    assert results["config"]["hparams"]["target_true_mass"] == 0.8
    history = compare.epoch_history(str(out))  # what a comparison row records, from the run's history.csv
    assert history["target_true_mass"] == pytest.approx([0.8, 0.8], abs=0.01)
