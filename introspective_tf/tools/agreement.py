r"""How closely a cheaper explanation choice reproduces the exact soft targets, on a trained model.

    python -m introspective_tf.tools.agreement --model_path=runs/RUN/model.keras \
        --dataset=folder:../shared/data/cifar10 --eval_split=validation \
        --variants='explanation=gradient;explanation_estimator=jvp;num_probes=4,explanation=gradcam'

For every batch of the evaluation split the reference targets q (exact input gradients unless
--reference says otherwise) and each variant's targets q' are computed on the same images, and the
table gives the mean KL(q || q') per example and how often the most similar wrong class agrees.
Variants use the benchmark's `key=value;key=value` syntax.
"""

from __future__ import annotations

import sys

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from introspective_tf import methods, soft_targets
from introspective_tf.errors import ConfigError
from introspective_tf.tools import tables
from introspective_tf.tools.variants import parse_settings
from introspective_tf.training import data as data_lib

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Only when run as a program: train.py defines some of the same names, and tests import both."""
    flags.DEFINE_string(
        "model_path", None, "A trained backbone saved as .keras (runs/<name>/model.keras).", required=True
    )
    flags.DEFINE_string("dataset", "folder:../shared/data/cifar10", "Dataset the model was trained on.")
    flags.DEFINE_enum("eval_split", "validation", list(data_lib.EVAL_SPLITS), "Split to compare targets on.")
    flags.DEFINE_float("validation_split", 0.1, "As in train.py.")
    flags.DEFINE_integer("batch_size", 128, "Batch size.")
    flags.DEFINE_integer("batches", 8, "Batches to average over.")
    flags.DEFINE_string(
        "reference",
        "explanation=gradient",
        "Settings of the reference targets (default: exact input gradients, cosine).",
    )
    flags.DEFINE_list("variants", ["explanation=gradcam"], "Settings of the variants to compare.")


def target_function(backbone: keras.Model, settings: dict):
    """images, labels -> q. Training-mode passes would move BatchNorm's statistics: they are put back."""
    trainer = methods.build("introspective", backbone, settings)
    if trainer.explanation_mode == "inference":
        return tf.function(trainer.targets)
    compute = tf.function(
        lambda x, y: trainer.shared_forward(x, y)[1] if trainer.explanation_mode == "shared" else trainer.targets(x, y)
    )

    def targets_leaving_the_model_unchanged(images, labels):
        saved = [v.numpy() for v in backbone.non_trainable_variables]
        q = compute(images, labels)
        for variable, value in zip(backbone.non_trainable_variables, saved):
            variable.assign(value)
        return q

    return targets_leaving_the_model_unchanged


def compare_targets(backbone: keras.Model, batches, reference: dict, variants: list[dict], seed: int = 0) -> list[dict]:
    """[{kl, top_wrong_agreement}] per variant: mean KL(q_ref || q_variant) and top wrong-class agreement."""
    keras.utils.set_random_seed(seed)
    reference_fn = target_function(backbone, reference)
    variant_fns = [target_function(backbone, v) for v in variants]
    kls, agreements = [[] for _ in variants], [[] for _ in variants]
    for images, labels in batches:
        q = reference_fn(images, labels)
        off_true = tf.one_hot(labels, q.shape[-1]) > 0
        top_wrong = tf.argmax(tf.where(off_true, -1.0, q), axis=-1)
        for i, fn in enumerate(variant_fns):
            q_variant = fn(images, labels)
            log_variant = tf.math.log(tf.maximum(q_variant, 1e-30))
            kls[i].append(soft_targets.kl_divergence_with_temperature(q, log_variant, 1.0).numpy())
            agreements[i].append((tf.argmax(tf.where(off_true, -1.0, q_variant), axis=-1) == top_wrong).numpy())
    return [
        {"kl": float(np.concatenate(k).mean()), "top_wrong_agreement": float(np.concatenate(a).mean())}
        for k, a in zip(kls, agreements)
    ]


def main(argv):
    del argv
    try:
        _agreement()
    except ConfigError as err:
        sys.exit(f"error: {err}")


def _agreement() -> None:
    reference = parse_settings(FLAGS.reference)
    variants = [parse_settings(v) for v in FLAGS.variants]
    for settings, spec in zip([reference, *variants], [FLAGS.reference, *FLAGS.variants]):
        methods.resolve("introspective", settings, spec or "reference")  # before any model or data is loaded
    backbone = keras.saving.load_model(FLAGS.model_path)
    data = data_lib.load(
        FLAGS.dataset, batch_size=FLAGS.batch_size, eval_split=FLAGS.eval_split, validation_split=FLAGS.validation_split
    )
    rows = compare_targets(backbone, data.eval.take(FLAGS.batches), reference, variants)
    print(
        f"model={FLAGS.model_path} data={FLAGS.dataset} {data.eval_split} batches={FLAGS.batches}x{FLAGS.batch_size} "
        f"reference={FLAGS.reference or 'introspective defaults'}"
    )
    body = [[spec, f"{row['kl']:.4f}", f"{row['top_wrong_agreement']:.3f}"] for spec, row in zip(FLAGS.variants, rows)]
    print(tables.table(["variant", "mean KL(q_ref || q)", "top wrong class agrees"], body))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
