"""A run's command-line flags, declared once: `train.py` parses its command line with them, and
`tools/compare.py` parses every run line of a comparison config with them (absl's own parsing:
types, enums, booleans, unknown flags), so a run line means exactly what the same flags mean to train.py.

The flags of `ExperimentConfig`'s fields carry its defaults; each method hyper-parameter (declared by
the methods themselves, `methods.all_hyperparameters`) is one flag whose default is None: unset, a run
uses its method's default.
"""

from __future__ import annotations

import dataclasses

from absl import flags

from introspective_tf import methods, models
from introspective_tf.errors import ConfigError
from introspective_tf.training import data, experiment
from introspective_tf.training.distribute import STRATEGIES

_DEFAULTS = experiment.ExperimentConfig()


def define_run_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines every flag of a run on `flag_values`."""
    fv = {"flag_values": flag_values}
    # Run.
    flags.DEFINE_string(
        "dataset",
        _DEFAULTS.dataset,
        "cifar10, cifar100, mnist, fashion_mnist, svhn_cropped (TFDS), or folder:ROOT.",
        **fv,
    )
    flags.DEFINE_string(
        "data_dir", None, "TFDS data directory (prepared datasets; no download needed if present).", **fv
    )
    flags.DEFINE_string(
        "data_cache_dir",
        _DEFAULTS.data_cache_dir,
        "Where a folder dataset's decoded images are kept between runs (checked against the files, rebuilt when "
        "they change); default $XDG_CACHE_HOME/introspective_tf or ~/.cache/introspective_tf; 'none' decodes "
        "the files in every run.",
        **fv,
    )
    flags.DEFINE_string("method", _DEFAULTS.method, f"Training method: {', '.join(methods.METHODS)}.", **fv)
    flags.DEFINE_string("model", _DEFAULTS.model, f"Backbone: {', '.join(models.MODELS)}.", **fv)
    flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Training epochs.", **fv)
    flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Global batch size.", **fv)
    flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Peak SGD learning rate (momentum 0.9).", **fv)
    flags.DEFINE_float("weight_decay", _DEFAULTS.weight_decay, "Coupled L2 weight decay on kernels.", **fv)
    flags.DEFINE_enum("schedule", _DEFAULTS.schedule, ["cosine", "step"], "Learning-rate schedule.", **fv)
    flags.DEFINE_integer(
        "steps_per_epoch", _DEFAULTS.steps_per_epoch, "Cap on steps per epoch; 0 = one pass over the data.", **fv
    )
    flags.DEFINE_integer("seed", _DEFAULTS.seed, "Random seed (weights, shuffling, augmentation).", **fv)
    flags.DEFINE_string("output_dir", "", "Run folder; default runs/<dataset>-<model>-<method>-seed<seed>.", **fv)
    flags.DEFINE_string(
        "export_dir", "", "SavedModel destination; default saved_models/<run name>; 'none' skips export.", **fv
    )
    flags.DEFINE_enum(
        "eval_split",
        _DEFAULTS.eval_split,
        list(data.EVAL_SPLITS),
        "Evaluate on the test split, or on --validation_split held out of train (automatic without a test split), "
        "or on a second such block before it (holdout: for scoring settings chosen on validation).",
        **fv,
    )
    flags.DEFINE_float(
        "validation_split",
        _DEFAULTS.validation_split,
        "Fraction of train held out when evaluating on validation.",
        **fv,
    )
    flags.DEFINE_integer("train_limit", _DEFAULTS.train_limit, "Keep only this many training examples; 0 = all.", **fv)
    flags.DEFINE_bool("jit_compile", _DEFAULTS.jit_compile, "XLA-compile the train step (was slower on CPU).", **fv)
    flags.DEFINE_integer("verbose", _DEFAULTS.verbose, "Keras fit verbosity: 1 progress bar, 2 a line per epoch.", **fv)
    flags.DEFINE_integer(
        "validation_freq",
        _DEFAULTS.validation_freq,
        "Evaluate on the eval split every this many epochs (always after the last).",
        **fv,
    )
    flags.DEFINE_integer(
        "validation_steps",
        _DEFAULTS.validation_steps,
        "Cap on the batches of each epoch's validation (fit's validation_steps, for quick tries); 0 = the whole "
        "eval split. The final evaluation in results.json always uses the whole split.",
        **fv,
    )
    flags.DEFINE_integer(
        "explanation_images_every",
        _DEFAULTS.explanation_images_every,
        "Draw held-out images' explanations and soft targets to TensorBoard (logs/explanations) after the "
        "first epoch, every this many epochs and the last; 0 = off.",
        **fv,
    )
    # Scale and reliability (docs/distribution.md).
    flags.DEFINE_enum(
        "strategy",
        _DEFAULTS.strategy,
        list(STRATEGIES),
        "tf.distribute strategy: default (one device), mirrored (all local GPUs), multiworker (TF_CONFIG), tpu.",
        **fv,
    )
    flags.DEFINE_string(
        "tpu", _DEFAULTS.tpu, "TPU name, grpc:// address, or 'local' (TPU VM), for --strategy=tpu.", **fv
    )
    flags.DEFINE_bool(
        "sync_batchnorm",
        _DEFAULTS.sync_batchnorm,
        "With several replicas, BatchNorm uses global-batch statistics (same maths as one device).",
        **fv,
    )
    flags.DEFINE_enum(
        "mixed_precision",
        _DEFAULTS.mixed_precision,
        list(experiment.PRECISIONS),
        "Keras dtype policy; explanations, soft targets and losses stay float32.",
        **fv,
    )
    flags.DEFINE_bool(
        "deterministic",
        _DEFAULTS.deterministic,
        "Deterministic ops (tf.config.experimental.enable_op_determinism): same seed, same results.",
        **fv,
    )
    # Every method's hyper-parameters, as each method declares them (its constructor and docstring).
    for name, (kind, help_text) in methods.all_hyperparameters().items():
        _DEFINE[kind](name, None, help_text, **fv)


_DEFINE = {float: flags.DEFINE_float, int: flags.DEFINE_integer, str: flags.DEFINE_string, bool: flags.DEFINE_bool}


def define_hyperparameter_flags(
    method: str, names: tuple[str, ...], flag_values: flags.FlagValues = flags.FLAGS
) -> None:
    """A flag for each of `names`, with `method`'s declared type, default and help: for tools that take
    some of a method's settings (explain.py and target_content take the introspective target's)."""
    declared = methods.get(method).hyperparameters()
    for name in names:
        _DEFINE[declared[name].type](name, declared[name].default, declared[name].help, flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> experiment.ExperimentConfig:
    """The run the parsed `flag_values` describe; hyper-parameters only where a flag was given."""
    values = {
        f.name: flag_values[f.name].value
        for f in dataclasses.fields(experiment.ExperimentConfig)
        if f.name in flag_values and f.name != "hparams"
    }
    hparams = {name: flag_values[name].value for name in methods.all_hyperparameters()}
    given = {k: v for k, v in hparams.items() if v is not None}
    if values.get("method") in methods.METHODS:
        methods.check_exclusive(values["method"], given)
    return experiment.ExperimentConfig(**values, hparams=given)


def parse_run_line(tokens: list[str], where: str) -> experiment.ExperimentConfig:
    """A run from flags as train.py takes them (`["--method=kd", "--alpha=0.9"]`); later flags win."""
    flag_values = flags.FlagValues()
    define_run_flags(flag_values)
    try:
        rest = flag_values(["run", *tokens])
    except flags.Error as err:
        raise ConfigError(f"{where}: {err}") from None
    if len(rest) > 1:
        raise ConfigError(f"{where}: expected --name=value, not '{rest[1]}'")
    try:
        return config_from_flags(flag_values)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
