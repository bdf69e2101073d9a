"""target_content: the wrong-class matrices and rank correlations by hand, then the CLI on real images."""

import json
import os
import subprocess
import sys

import background
import keras
import numpy as np
import pytest
import references
import tensorflow as tf
from commands import run_concurrently
from conftest import MINI, REPO

from introspective_tf import methods, models
from introspective_tf.errors import ConfigError
from introspective_tf.tools import target_content as tc

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
NAN = np.nan


# References written out here from the definitions in target_content's docstring (no package code).


def _non_gt_class_means_by_definition(probabilities, labels, num_classes):
    """Row y: the mean over examples of class y of (p_c / sum_{c' != y} p_c')_{c != y}; examples with no mass
    off y are left out; NaN on the diagonal and in a row with no usable example."""
    rows = np.full((num_classes, num_classes), NAN)
    for y in range(num_classes):
        others = [c for c in range(num_classes) if c != y]
        kept = []
        for p, label in zip(probabilities, labels):
            mass = sum(p[c] for c in others)
            if label == y and mass > 0:
                kept.append([p[c] / mass for c in others])
        if kept:
            rows[y, others] = np.mean(kept, axis=0)
    return rows


def _confusion_by_definition(predictions, labels, num_classes):
    """Row y: the share of the mistakes on class y that went to each class c != y; NaN without mistakes."""
    rows = np.full((num_classes, num_classes), NAN)
    for y in range(num_classes):
        mistakes = [int(p) for p, label in zip(predictions, labels) if label == y and p != y]
        if mistakes:
            for c in range(num_classes):
                if c != y:
                    rows[y, c] = mistakes.count(c) / len(mistakes)
    return rows


def _ranks_by_definition(values):
    """1 + the number of smaller values + half the number of the other equal values (tied ranks averaged)."""
    return np.array([1 + np.sum(values < v) + (np.sum(values == v) - 1) / 2 for v in values], np.float64)


def _spearman_by_definition(a, b):
    """The Pearson correlation of the ranks over the positions where both are finite."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    finite = np.isfinite(a) & np.isfinite(b)
    if finite.sum() < 2:
        return NAN
    ra, rb = _ranks_by_definition(a[finite]), _ranks_by_definition(b[finite])
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt(np.sum(ra**2) * np.sum(rb**2))
    return NAN if denominator == 0 else np.sum(ra * rb) / denominator


def _row_correlations_by_definition(m1, m2):
    """Per class y, the Spearman correlation of rows y over the classes c != y."""
    return np.array([_spearman_by_definition(np.delete(m1[y], y), np.delete(m2[y], y)) for y in range(len(m1))])


# --------------------------------------------------------------------------------- non_gt_class_means


def test_non_gt_class_means_by_hand():
    probabilities = np.array(
        [
            [0.5, 0.3, 0.2],  # y=0: others 0.3, 0.2 of 0.5 -> 0.6, 0.4
            [0.8, 0.0, 0.2],  # y=0: -> 0.0, 1.0
            [0.25, 0.5, 0.25],  # y=1: -> 0.5, 0.5
            [0.0, 1.0, 0.0],  # y=1: no mass off the true class: no ranking, left out
        ]
    )
    labels = np.array([0, 0, 1, 1])
    means = tc.non_gt_class_means(probabilities, labels, 3)
    expected = np.array([[NAN, 0.3, 0.7], [0.5, NAN, 0.5], [NAN, NAN, NAN]])  # class 2 has no example
    np.testing.assert_allclose(means, expected, equal_nan=True)
    assert np.isnan(np.diag(means)).all()
    np.testing.assert_allclose(np.nansum(means[:2], axis=1), 1.0)


def test_each_example_is_renormalised_before_the_class_mean():
    # One confident and one unsure example of class 0: each weighs the same in the row.
    probabilities = np.array([[0.98, 0.02, 0.0], [0.0, 0.0, 1.0]])
    means = tc.non_gt_class_means(probabilities, np.array([0, 0]), 3)
    np.testing.assert_allclose(means[0], [NAN, 0.5, 0.5], equal_nan=True)


def test_non_gt_class_means_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match="probabilities must be"):
        tc.non_gt_class_means(np.ones((2, 4)) / 4, np.array([0, 1]), 3)


# ----------------------------------------------------------------------------------- confusion_non_gt


def test_confusion_non_gt_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2, 2])
    predictions = np.array([0, 1, 2, 1, 1, 0, 0])
    confusion = tc.confusion_non_gt(predictions, labels, 3)
    expected = np.array(
        [
            [NAN, 0.5, 0.5],  # one mistake to each other class
            [NAN, NAN, NAN],  # no mistake: no wrong-class distribution
            [1.0, 0.0, NAN],  # both mistakes to class 0
        ]
    )
    np.testing.assert_allclose(confusion, expected, equal_nan=True)


def test_confusion_non_gt_against_its_definition():
    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    np.testing.assert_allclose(
        tc.confusion_non_gt(predictions, labels, 5), _confusion_by_definition(predictions, labels, 5), equal_nan=True
    )
    only_right = np.array([0, 1, 1, 2])
    np.testing.assert_allclose(
        tc.confusion_non_gt(only_right, only_right, 3), np.full((3, 3), NAN), equal_nan=True
    )  # no mistake: no row


# ------------------------------------------------------------------------------------------- spearman


def test_average_ranks_share_ties():
    np.testing.assert_array_equal(tc._average_ranks(np.array([10.0, 20.0, 20.0, 5.0])), [2.0, 3.5, 3.5, 1.0])
    np.testing.assert_array_equal(tc._average_ranks(np.array([7.0, 7.0, 7.0])), [2.0, 2.0, 2.0])


def test_spearman_by_hand():
    # No ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1)) = 1 - 6 * 2 / 60.
    assert tc.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # Ties: ranks of b are 1, 2, 3.5, 5, 3.5; Pearson of the ranks = 8 / sqrt(10 * 9.5).
    assert tc.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / np.sqrt(95))


def test_spearman_is_plus_or_minus_one_for_any_monotone_relation():
    assert tc.spearman([0.1, 0.2, 0.3, 0.4], [1, 10, 100, 1000]) == pytest.approx(1.0)
    assert tc.spearman([0.1, 0.2, 0.3, 0.4], [-np.exp(1), -np.exp(2), -np.exp(3), -np.exp(4)]) == pytest.approx(-1.0)


def test_spearman_undefined_cases_and_non_finite_entries():
    assert np.isnan(tc.spearman([1, 2, 3], [5, 5, 5]))  # a constant side has no order
    assert np.isnan(tc.spearman([1, NAN, 3], [1, 2, NAN]))  # one finite pair
    assert tc.spearman([1, NAN, 2, 3], [1, 9, 2, 3]) == pytest.approx(1.0)  # NaN position dropped
    with pytest.raises(ValueError):
        tc.spearman([1, 2], [1, 2, 3])


def test_spearman_against_its_definition_with_ties_and_non_finite_entries():
    rng = np.random.default_rng(1)
    for _ in range(50):
        a, b = rng.integers(0, 4, 9).astype(float), rng.integers(0, 6, 9).astype(float)  # ties on both sides
        a[rng.random(9) < 0.15] = NAN
        if np.isfinite(_spearman_by_definition(a, b)):
            assert tc.spearman(a, b) == pytest.approx(_spearman_by_definition(a, b), abs=1e-12)
        else:
            assert np.isnan(tc.spearman(a, b))
        values = rng.integers(0, 4, 9).astype(float)
        np.testing.assert_array_equal(tc._average_ranks(values), _ranks_by_definition(values))


def test_spearman_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for _ in range(20):
        a, b = rng.integers(0, 4, 9).astype(float), rng.normal(size=9)  # many ties on one side
        if len(set(a)) > 1:
            assert tc.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)


# ------------------------------------------------------------------------------ row_rank_correlations


def test_row_rank_correlations_ignore_the_diagonal():
    m1 = np.array(
        [
            [NAN, 0.5, 0.3, 0.2],
            [0.1, NAN, 0.3, 0.6],
            [0.2, 0.3, NAN, 0.5],
            [0.4, 0.4, 0.2, NAN],
        ]
    )
    m2 = np.array(
        [
            [100.0, 0.2, 0.3, 0.5],  # reversed order: -1 (the diagonal would change the ranks if used)
            [0.2, -5.0, 0.3, 0.5],  # same order: +1
            [0.2, 0.3, 0.0, 0.5],  # same order: +1
            [0.5, 0.3, 0.2, 9.0],  # m1 ties 0.4, 0.4: ranks 2.5, 2.5, 1 vs 3, 2, 1
        ]
    )
    expected_last = tc.spearman([0.4, 0.4, 0.2], [0.5, 0.3, 0.2])
    assert expected_last == pytest.approx(1.5 / np.sqrt(1.5 * 2))  # Pearson of ranks (2.5, 2.5, 1) and (3, 2, 1)
    np.testing.assert_allclose(tc.row_rank_correlations(m1, m2), [-1.0, 1.0, 1.0, expected_last])


def test_class_means_and_row_correlations_against_their_definitions():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 6, 300)
    student, teacher = rng.dirichlet(np.ones(6), size=300), rng.dirichlet(np.ones(6), size=300)
    student[0] = np.eye(6)[labels[0]]  # no mass off the true class: left out
    m1, m2 = tc.non_gt_class_means(student, labels, 6), tc.non_gt_class_means(teacher, labels, 6)
    np.testing.assert_allclose(m1, _non_gt_class_means_by_definition(student, labels, 6), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(m2, _non_gt_class_means_by_definition(teacher, labels, 6), rtol=1e-12, equal_nan=True)
    correlations = tc.row_rank_correlations(m1, m2)
    np.testing.assert_allclose(correlations, _row_correlations_by_definition(m1, m2), atol=1e-12)
    assert np.ptp(correlations) > 0.5  # two unrelated draws: rows that agree and rows that do not
    # Rows with ties (small integers) and a class with no usable example (a NaN row).
    m1, m2 = rng.integers(0, 3, (6, 6)).astype(float), rng.integers(0, 3, (6, 6)).astype(float)
    np.fill_diagonal(m1, NAN), np.fill_diagonal(m2, NAN)
    m1[5] = NAN
    np.testing.assert_allclose(
        tc.row_rank_correlations(m1, m2), _row_correlations_by_definition(m1, m2), atol=1e-12, equal_nan=True
    )
    # A monotone change of one example's distribution (as a softmax temperature is) keeps its order.
    sharper = tc.non_gt_class_means(student[1:2] ** 2 / (student[1:2] ** 2).sum(), labels[1:2], 6)
    single = tc.non_gt_class_means(student[1:2], labels[1:2], 6)
    assert tc.row_rank_correlations(single, sharper)[labels[1]] == pytest.approx(1.0)


# -------------------------------------------------------------------------------- analyse and output


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """An untrained small_cnn to analyse, another as teacher, and a 5-class one that fits no data here."""
    directory = tmp_path_factory.mktemp("target_content")
    paths = {}
    for name, seed, classes in [("model", 0, 10), ("teacher", 1, 10), ("five", 2, 5)]:
        keras.utils.set_random_seed(seed)
        paths[name] = directory / f"{name}.keras"
        models.small_cnn((32, 32, 3), classes).save(paths[name])
    return paths


def test_analyse_with_a_teacher_equal_to_the_introspective_target():
    keras.utils.set_random_seed(3)
    backbone = models.small_cnn((32, 32, 3), 4)
    rng = np.random.default_rng(3)
    images, labels = rng.uniform(0, 255, (24, 32, 32, 3)).astype("float32"), np.arange(24) % 4
    hparams = {
        "similarity_temperature": 0.5,
        "explanation": "gradcam",
        "similarity": "cosine",
        "soft_target": "softmax",
    }
    # q by its definition, written out: Grad-CAM of every class in an inference-mode pass (the analysed model is
    # trained, not training), cosine to the true class's map, softmax(s / tau), in numpy.
    maps = references.per_class_gradcam_reference(backbone, images).numpy()
    reference = references.soft_target(references.similarity_to_true_class(maps, labels), labels, "softmax", 0.5)
    temperature = 4.0
    # A "teacher" whose softmax(z / T) is exactly q: its logits are T log q.
    teacher = lambda x: temperature * tf.math.log(tf.constant(reference, tf.float64))  # noqa: E731
    result = tc.analyse(
        backbone,
        teacher,
        images,
        labels,
        hparams=hparams,
        teacher_temperature=temperature,
        batch_size=len(images),
        class_names=["a", "b", "c", "d"],
    )
    intro, teacher_matrix = _non_gt_class_means_by_definition(reference, labels, 4), result["matrices"]["teacher"]
    np.testing.assert_allclose(result["matrices"]["intro"], intro, rtol=1e-4, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(teacher_matrix, intro, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(result["rank_correlation"]["intro_vs_teacher"], 1.0)
    assert result["mean_rank_correlation"]["intro_vs_teacher"] == pytest.approx(1.0)
    # The model's own mistakes, and how both targets rank the classes it confuses.
    predictions = np.argmax(backbone(images, training=False).numpy(), axis=-1)
    confusion = _confusion_by_definition(predictions, labels, 4)
    np.testing.assert_allclose(result["matrices"]["confusion"], confusion, equal_nan=True)
    for key in ("intro_vs_confusion", "teacher_vs_confusion"):
        expected = _row_correlations_by_definition(intro, confusion)
        np.testing.assert_allclose(result["rank_correlation"][key], expected, atol=1e-6, equal_nan=True)
        finite = expected[np.isfinite(expected)]
        assert result["mean_rank_correlation"][key] == pytest.approx(finite.mean() if finite.size else NAN, nan_ok=True)
    rows = np.arange(len(labels))
    assert result["intro_true_class_mass"] == pytest.approx(reference[rows, labels].mean(), rel=1e-5)
    # A teacher whose target is q softens exactly the examples q softens.
    assert result["true_class_mass_rank_correlation"] == pytest.approx(1.0)
    assert result["hparams"]["explanation_mode"] == "inference"
    assert result["hparams"]["similarity_temperature"] == 0.5
    assert result["images_per_class"] == [6, 6, 6, 6]
    # Batches of 10 (the last one padded) give the same numbers.
    batched = tc.analyse(backbone, lambda x: backbone(x), images, labels, hparams=hparams, batch_size=10)
    unbatched = tc.analyse(backbone, lambda x: backbone(x), images, labels, hparams=hparams, batch_size=len(images))
    # The model as its own teacher: over the images, how q's true-class mass ranks against softmax(z / T)'s.
    logits = backbone(images, training=False).numpy().astype(np.float64) / 4.0
    own = np.exp(logits - logits.max(axis=1, keepdims=True))
    own = own[rows, labels] / own.sum(axis=1)
    ranks = [np.argsort(np.argsort(values)) for values in (reference[rows, labels], own)]  # continuous: no ties
    expected = np.corrcoef(*ranks)[0, 1]
    assert unbatched["true_class_mass_rank_correlation"] == pytest.approx(expected, abs=1e-4)
    for name in ("intro", "teacher", "confusion"):
        np.testing.assert_allclose(
            batched["matrices"][name], unbatched["matrices"][name], rtol=1e-5, atol=1e-7, equal_nan=True
        )

    table = tc.markdown_table(result)
    lines = table.strip().splitlines()
    assert len(lines) == 2 + 4 + 1 and lines[-1].startswith("| **mean** | +1.00 |")
    assert all(line.count("|") == 7 for line in lines)
    # The JSON form (NaN -> null) gives the same table.
    as_json = json.loads(json.dumps(tc.to_json(result), allow_nan=False))
    assert as_json["matrices"]["intro"][0][0] is None
    assert tc.markdown_table(as_json) == table


def test_analyse_the_explained_pskd_target_by_hand():
    """pskd_explained's target as in its last epoch: (1 - alpha) + alpha p(y | x) on the true class, the rest
    spread over the wrong classes by softmax(s / tau) of the Grad-CAM similarities (numpy, by definition)."""
    keras.utils.set_random_seed(4)
    backbone = models.small_cnn((32, 32, 3), 4)
    rng = np.random.default_rng(4)
    images, labels = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32"), np.arange(16) % 4
    alpha, tau = 0.6, 0.3
    maps = references.per_class_gradcam_reference(backbone, images).numpy()
    spread = references.soft_target(references.similarity_to_true_class(maps, labels), labels, "smoothing", tau, 1.0)
    logits = backbone(images, training=False).numpy().astype(np.float64)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    mass = (1 - alpha) + alpha * probabilities[rows, labels]
    reference = (1 - mass)[:, None] * spread
    reference[rows, labels] = mass
    np.testing.assert_allclose(reference.sum(axis=1), 1.0)
    hparams = {"alpha": alpha, "similarity_temperature": tau, "explanation": "gradcam", "similarity": "cosine"}
    result = tc.analyse(
        backbone, lambda x: backbone(x), images, labels, hparams=hparams, method="pskd_explained", batch_size=16
    )
    intro = _non_gt_class_means_by_definition(reference, labels, 4)
    np.testing.assert_allclose(result["matrices"]["intro"], intro, rtol=1e-4, atol=1e-6, equal_nan=True)
    assert result["intro_true_class_mass"] == pytest.approx(mass.mean(), rel=1e-5)
    assert result["intro_true_class_mass_std"] == pytest.approx(mass.std(), rel=1e-3, abs=1e-6)
    assert result["method"] == "pskd_explained" and result["hparams"]["alpha"] == alpha
    assert tc._softness(result["hparams"], result["method"]) == "PS-KD alpha 0.6, tau 0.3"
    # A setting the method does not take, and a method whose target this tool does not know, are config errors.
    with pytest.raises(ConfigError, match="soft_target"):
        tc.analyse(
            backbone, lambda x: backbone(x), images, labels, hparams={"soft_target": "softmax"}, method="pskd_explained"
        )
    with pytest.raises(ConfigError, match="pskd'"):
        tc.analyse(backbone, lambda x: backbone(x), images, labels, method="pskd")


def test_markdown_table_by_hand():
    result = {
        "class_names": ["cat", "dog", "car"],
        "matrices": {
            "intro": [[None, 0.7, 0.3], [0.9, None, 0.1], [None, None, None]],
            "teacher": [[None, 0.2, 0.8], [0.6, None, 0.4], [0.5, 0.5, None]],
        },
        "rank_correlation": {
            "intro_vs_teacher": [-1.0, 1.0, None],
            "intro_vs_confusion": [0.5, None, None],
            "teacher_vs_confusion": [0.25, -0.5, None],
        },
        "mean_rank_correlation": {"intro_vs_teacher": 0.0, "intro_vs_confusion": 0.5, "teacher_vs_confusion": -0.125},
    }
    lines = tc.markdown_table(result).strip().splitlines()
    assert lines[2] == "| cat | -1.00 | +0.50 | +0.25 | dog | car |"
    assert lines[3] == "| dog | +1.00 | - | -0.50 | cat | cat |"
    assert lines[4] == "| car | - | - | - | - | cat |"
    assert lines[5] == "| **mean** | +0.00 | +0.50 | -0.12 | | |"


def test_bad_inputs_are_config_errors(saved_models, mini_dataset, tmp_path):
    output = str(tmp_path / "out.json")
    with pytest.raises(ConfigError, match="has 5 classes, the data has 10"):
        tc.run(str(saved_models["model"]), str(saved_models["five"]), mini_dataset, output=output, num_images=4)
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet_v2'"):
        tc.run(str(saved_models["model"]), str(saved_models["teacher"]), "imagenet_v2", output=output)
    with pytest.raises(ConfigError, match="explanation must be one of"):
        tc.run(
            str(saved_models["model"]),
            str(saved_models["teacher"]),
            mini_dataset,
            output=output,
            num_images=4,
            hparams={"explanation": "lime"},
        )
    assert not os.path.exists(output)


def test_training_images_are_the_first_training_images_unaugmented(mini_dataset):
    from introspective_tf.training import data as data_lib

    images, labels, data = tc.load_images(
        mini_dataset, num_images=24, batch_size=8, training_images=True, train_limit=24
    )
    assert images.shape == (24, *data.image_shape) and data.num_train == 24
    # The same 24 images (in another order, uncropped, unflipped) as the split's first 24.
    builder = data_lib._load_folder(str(MINI))
    first = [(x.numpy(), int(y)) for x, y in builder.as_dataset(split="train", as_supervised=True).take(24)]
    key = lambda image, label: (label, image.astype(np.uint8).tobytes())  # noqa: E731
    assert sorted(key(x, y) for x, y in zip(images, labels)) == sorted(key(x, y) for x, y in first)
    held_out, _, _ = tc.load_images(mini_dataset, num_images=24, batch_size=8)
    assert not {x.astype(np.uint8).tobytes() for x in held_out} & {x.astype(np.uint8).tobytes() for x in images}


def _cli(*args):
    return [sys.executable, "-m", "introspective_tf.tools.target_content", *args]


# The models the module fixture `saved_models` makes ("model": seed 0, "teacher": seed 1), made again by a
# process of the background job.
SAVED_MODELS = (
    "import sys, keras; from introspective_tf import models\n"
    "for name, seed in (('model', 0), ('teacher', 1)):\n"
    "    keras.utils.set_random_seed(seed)\n"
    "    models.small_cnn((32, 32, 3), 10).save(f'{sys.argv[1]}/{name}.keras')\n"
)


@background.fixture
def target_content_cli(folder):
    """The command on two models, and on a missing one, both at once (tests/commands.py), in the background
    (tests/background.py): {"wrote": (result, output, figure), "missing": (result, folder)}."""
    if not (MINI / "train").is_dir():
        pytest.skip("real data not found")
    done = subprocess.run(
        [sys.executable, "-c", SAVED_MODELS, str(folder)], cwd=REPO, env=ENV, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    output, figure = folder / "results" / "target_content.json", folder / "results" / "target_content.png"
    (folder / "missing").mkdir()
    missing = folder / "missing" / "missing.keras"
    wrote, refused = run_concurrently(
        [
            _cli(
                f"--model_path={folder / 'model.keras'}",
                f"--teacher={folder / 'teacher.keras'}",
                f"--dataset=folder:{MINI}",
                "--num_images=40",
                "--batch_size=20",
                f"--output={output}",
                f"--figure={figure}",
            ),
            _cli(
                f"--model_path={missing}",
                f"--teacher={missing}",
                f"--output={folder / 'missing' / 'out.json'}",
                "--figure=",
            ),
        ],
        cwd=REPO,
        env=ENV,
        timeout=300,
    )
    return {"wrote": (wrote, output, figure), "missing": (refused, folder / "missing")}


@pytest.mark.slow
def test_cli_writes_json_and_figure(target_content_cli):
    result, output, figure = target_content_cli["wrote"]
    assert result.returncode == 0, result.stderr[-3000:]
    content = json.loads(output.read_text())
    assert content["num_images"] == 40 and content["eval_split"] == "validation"
    assert content["class_names"] == sorted(os.listdir(MINI / "train"))
    for key in tc.PAIRS:
        assert np.isfinite(content["mean_rank_correlation"][key]), key
        assert len(content["rank_correlation"][key]) == 10
    for name in ("intro", "teacher", "confusion"):
        assert np.array(content["matrices"][name], dtype=float).shape == (10, 10)
    assert content["hparams"]["explanation_mode"] == "inference"
    assert content["hparams"]["explanation"] == methods.resolve("introspective")["explanation"]
    assert content["teacher_temperature"] == 4.0 and content["provenance"]["code_hash"]
    assert content["images"] == "held_out"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| **mean** |" in result.stdout


@pytest.mark.slow
def test_cli_missing_model_is_one_error_line(target_content_cli):
    result, tmp_path = target_content_cli["missing"]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "missing.keras" in errors[0], result.stderr
    assert not (tmp_path / "out.json").exists()
