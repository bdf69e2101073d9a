r"""Trains a classifier with one of the project's methods, evaluates it, and exports it for serving.

    python train.py --dataset=cifar10 --method=introspective
    python train.py --flagfile=configs/introspective_cifar10.cfg
    python train.py --dataset=folder:../shared/data/cifar10 --method=introspective --model=resnet20

Writes results.json, history.csv, TensorBoard logs, checkpoints and model.keras to --output_dir, and
a SavedModel (float images in, probabilities out) to --export_dir.
"""

from __future__ import annotations

import sys

from absl import app, flags

from introspective_tf import quiet
from introspective_tf.errors import ConfigError
from introspective_tf.training import experiment, run_flags, run_lock

run_flags.define_run_flags()  # every ExperimentConfig field and every method's hyper-parameters
FLAGS = flags.FLAGS


def main(argv):
    quiet.command_defaults()
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]} (flags look like --name=value)")
    try:
        config = run_flags.config_from_flags(FLAGS)
        config.validate()  # a bad flag is named before the run folder is looked at
        with run_lock.hold(run_lock.run_folder(config)):  # one process per run folder
            results = experiment.run(config)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    exported = f"exported to {results['export_dir']}" if results["export_dir"] else "not exported"
    print(
        f"{results['method']} on {results['dataset']}: {results['eval_split']} accuracy "
        f"{results['eval_accuracy']:.4f}, loss {results['eval_loss']:.4f}; {exported}"
    )


if __name__ == "__main__":
    app.run(main)
