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

from introspective_tf import experiment, methods, models
from introspective_tf.distribute import STRATEGIES
from introspective_tf.errors import ConfigError
from introspective_tf.experiment import PRECISIONS
from introspective_tf.explanations import EXPLANATIONS, IMPLEMENTATIONS
from introspective_tf.methods.introspective import EXPLANATION_MODES
from introspective_tf.methods.kd import KD_TARGETS
from introspective_tf.soft_targets import SIMILARITIES, SOFT_TARGETS

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

# Introspective learning (see introspective_tf/methods/introspective.py and docs/sweep.md).
# --alpha and --temperature are shared with kd; unset, each method uses its own default
# (introspective: 0.2 and 1.0 from the sweep in docs/sweep.md; kd: 0.5 and 4.0 as in Hinton et al.).
flags.DEFINE_float(
    "alpha", None, "Weight of the soft-target term; 1 - alpha goes to the hard label. Default: the method's."
)
flags.DEFINE_float(
    "temperature", None, "Student temperature T in KL(q || softmax(z / T)), scaled by T^2. Default: the method's."
)
flags.DEFINE_float("similarity_temperature", 0.05, "tau in q = softmax(similarity / tau).")
flags.DEFINE_enum(
    "soft_target",
    "softmax",
    list(SOFT_TARGETS),
    "softmax: q = softmax(s / tau); smoothing: 1 - eps on y, eps spread by softmax(s / tau).",
)
flags.DEFINE_float("epsilon", 0.1, "Mass off the true class for --soft_target=smoothing.")
flags.DEFINE_enum(
    "explanation_mode",
    "auto",
    list(EXPLANATION_MODES),
    "Which pass is explained: a separate inference- or training-mode pass, or the training pass itself "
    "(shared); auto: shared for gradcam, else inference.",
)
flags.DEFINE_enum(
    "explanation_implementation", "loop", list(IMPLEMENTATIONS), "How all-class input gradients are computed."
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

# Explanation choices and the fast path (docs/fast_introspection.md).
flags.DEFINE_enum(
    "explanation",
    "gradcam",
    list(EXPLANATIONS),
    "Self-explanation: Grad-CAM at --explanation_layer (default: cost ~1x), input gradient, or gradient x input "
    "(exact: C backward passes).",
)
flags.DEFINE_string("explanation_layer", "last_conv_block", "Layer whose output Grad-CAM explains with.")
flags.DEFINE_enum(
    "similarity", "cosine", list(SIMILARITIES), "How a class's explanation is compared with the true class's."
)
flags.DEFINE_enum(
    "explanation_estimator",
    "exact",
    ["exact", "jvp"],
    "exact: one backward pass per class; jvp: forward-mode estimate whose cost does not grow with the class count.",
)
flags.DEFINE_integer("num_probes", 4, "Random probes per example for --explanation_estimator=jvp's norm estimates.")

FLAGS = flags.FLAGS

# Flags that are the method's hyper-parameters; each method takes those its constructor names.
METHOD_FLAGS = (
    "alpha",
    "temperature",
    "similarity_temperature",
    "soft_target",
    "epsilon",
    "explanation_mode",
    "explanation_implementation",
)
flags.DEFINE_float(
    "warmup_epochs",
    0.0,
    "introspective: ramp alpha linearly from 0 over this many epochs (after --introspect_from_epoch).",
)
flags.DEFINE_integer(
    "introspect_from_epoch",
    0,
    "introspective: no soft-target term before this epoch (an untrained net's explanations are noise).",
)
METHOD_FLAGS += (
    "explanation",
    "explanation_layer",
    "similarity",
    "explanation_estimator",
    "num_probes",
    "warmup_epochs",
    "introspect_from_epoch",
)

# Baselines: label smoothing, confidence penalty, knowledge distillation, deep mutual learning
# (see introspective_tf/methods/ and docs/baselines.md). kd also takes --alpha and --temperature.
flags.DEFINE_float("smoothing", 0.1, "label_smoothing: eps in (1 - eps) onehot(y) + eps / C.")
flags.DEFINE_float("penalty", 0.1, "confidence_penalty: beta in CE - beta H(p).")
flags.DEFINE_string("teacher", "", "kd: the teacher, a run's model.keras or a SavedModel exported by this project.")
flags.DEFINE_enum(
    "kd_target",
    "full",
    list(KD_TARGETS),
    "kd: the teacher's soft targets (full), its GT response with uniform non-GT mass, or shuffled non-GT responses.",
)
flags.DEFINE_integer("peers", 2, "dml: networks trained together; the first is exported.")
# Teacher-free peers (docs/baselines.md): pskd takes --alpha (alpha_T, default 0.8); tfkd_reg takes
# --alpha and --temperature (defaults 0.1 and 20) and the two below.
flags.DEFINE_float("correct_probability", 0.99, "tfkd_reg: the virtual teacher's probability of the true class.")
flags.DEFINE_float("multiplier", 100.0, "tfkd_reg: scale of the KL term (the authors' code divides it by C).")
METHOD_FLAGS += ("smoothing", "penalty", "teacher", "kd_target", "peers", "correct_probability", "multiplier")


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
