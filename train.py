r"""Trains a classifier with one of the project's methods, evaluates it, and exports it for serving.

    python train.py --dataset=cifar10 --method=introspective
    python train.py --flagfile=configs/introspective_cifar10.cfg
    python train.py --dataset=folder:../shared/data/cifar10 --method=introspective --model=resnet20

Writes results.json, history.csv, TensorBoard logs, checkpoints and model.keras to --output_dir, and
a SavedModel (float images in, probabilities out) to --export_dir.
"""

from __future__ import annotations

import dataclasses
import sys

from absl import app, flags

from introspective_tf import experiment, methods, models, quiet
from introspective_tf.distribute import STRATEGIES
from introspective_tf.errors import ConfigError
from introspective_tf.experiment import PRECISIONS

_DEFAULTS = experiment.ExperimentConfig()

# Run.
flags.DEFINE_string(
    "dataset", _DEFAULTS.dataset, "cifar10, cifar100, mnist, fashion_mnist, svhn_cropped (TFDS), or folder:ROOT."
)
flags.DEFINE_string("data_dir", None, "TFDS data directory (prepared datasets; no download needed if present).")
flags.DEFINE_string("method", _DEFAULTS.method, f"Training method: {', '.join(methods.METHODS)}.")
flags.DEFINE_string("model", _DEFAULTS.model, f"Backbone: {', '.join(models.MODELS)}.")
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Training epochs.")
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Global batch size.")
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Peak SGD learning rate (momentum 0.9).")
flags.DEFINE_float("weight_decay", _DEFAULTS.weight_decay, "Coupled L2 weight decay on kernels.")
flags.DEFINE_enum("schedule", _DEFAULTS.schedule, ["cosine", "step"], "Learning-rate schedule.")
flags.DEFINE_integer(
    "steps_per_epoch", _DEFAULTS.steps_per_epoch, "Cap on steps per epoch; 0 = one pass over the data."
)
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Random seed (weights, shuffling, augmentation).")
flags.DEFINE_string("output_dir", "", "Run folder; default runs/<dataset>-<model>-<method>-seed<seed>.")
flags.DEFINE_string("export_dir", "", "SavedModel destination; default saved_models/<run name>; 'none' skips export.")
flags.DEFINE_enum(
    "eval_split",
    _DEFAULTS.eval_split,
    ["test", "validation"],
    "Evaluate on the test split, or on --validation_split held out of train (automatic without a test split).",
)
flags.DEFINE_float(
    "validation_split", _DEFAULTS.validation_split, "Fraction of train held out when evaluating on validation."
)
flags.DEFINE_integer("train_limit", _DEFAULTS.train_limit, "Keep only this many training examples; 0 = all.")
flags.DEFINE_bool("jit_compile", _DEFAULTS.jit_compile, "XLA-compile the train step (was slower on CPU).")
flags.DEFINE_integer("verbose", _DEFAULTS.verbose, "Keras fit verbosity: 1 progress bar, 2 a line per epoch.")
flags.DEFINE_integer(
    "validation_freq",
    _DEFAULTS.validation_freq,
    "Evaluate on the eval split every this many epochs (always after the last).",
)

# Scale and reliability (docs/distribution.md).
flags.DEFINE_enum(
    "strategy",
    _DEFAULTS.strategy,
    list(STRATEGIES),
    "tf.distribute strategy: default (one device), mirrored (all local GPUs), multiworker (TF_CONFIG), tpu.",
)
flags.DEFINE_string("tpu", _DEFAULTS.tpu, "TPU name, grpc:// address, or 'local' (TPU VM), for --strategy=tpu.")
flags.DEFINE_bool(
    "sync_batchnorm",
    _DEFAULTS.sync_batchnorm,
    "With several replicas, BatchNorm uses global-batch statistics (same maths as one device).",
)
flags.DEFINE_enum(
    "mixed_precision",
    _DEFAULTS.mixed_precision,
    list(PRECISIONS),
    "Keras dtype policy; explanations, soft targets and losses stay float32.",
)
flags.DEFINE_bool(
    "deterministic",
    _DEFAULTS.deterministic,
    "Deterministic ops (tf.config.experimental.enable_op_determinism): same seed, same results.",
)

FLAGS = flags.FLAGS

# Every method's hyper-parameters, as each method declares them (its constructor and docstring: see
# introspective_tf/methods/). One flag per name; unset, a run uses its method's default.
_DEFINE = {float: flags.DEFINE_float, int: flags.DEFINE_integer, str: flags.DEFINE_string, bool: flags.DEFINE_bool}
METHOD_FLAGS = methods.all_hyperparameters()
for _name, (_kind, _help) in METHOD_FLAGS.items():
    _DEFINE[_kind](_name, None, _help)


def config_from_flags() -> experiment.ExperimentConfig:
    values = {
        f.name: FLAGS[f.name].value
        for f in dataclasses.fields(experiment.ExperimentConfig)
        if f.name in FLAGS and f.name != "hparams"
    }
    return experiment.ExperimentConfig(
        **values, hparams={name: FLAGS[name].value for name in METHOD_FLAGS if FLAGS[name].value is not None}
    )


def main(argv):
    quiet.command_defaults()
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]} (flags look like --name=value)")
    try:
        results = experiment.run(config_from_flags())
    except ConfigError as err:
        sys.exit(f"error: {err}")
    exported = f"exported to {results['export_dir']}" if results["export_dir"] else "not exported"
    print(
        f"{results['method']} on {results['dataset']}: {results['eval_split']} accuracy "
        f"{results['eval_accuracy']:.4f}, loss {results['eval_loss']:.4f}; {exported}"
    )


if __name__ == "__main__":
    app.run(main)
