r"""Draws a trained model's self-explanations and the soft targets introspective learning makes of them.

    python explain.py --model_path=saved_models/cifar10-resnet20-introspective-seed0 \
        --dataset=folder:../shared/data/cifar10 --num_images=8 --output=explanations.png

--model_path takes a SavedModel export of this project, a run folder or a model.keras file. The images
are the first --num_images of the dataset's evaluation split (test, or validation held out of train).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from introspective_tf import quiet
from introspective_tf.errors import ConfigError
from introspective_tf.tools import visualize
from introspective_tf.training import data as data_lib
from introspective_tf.training import run_flags

flags.DEFINE_string("model_path", None, "SavedModel export, run folder, or model.keras file.", required=True)
flags.DEFINE_string("dataset", "cifar10", "cifar10, cifar100, ... (TFDS) or folder:ROOT; must match the model.")
flags.DEFINE_string("data_dir", None, "TFDS data directory.")
flags.DEFINE_enum(
    "eval_split", "test", list(data_lib.EVAL_SPLITS), "Where the images come from (validation if no test split)."
)
flags.DEFINE_integer("num_images", 8, "Images (figure rows).")
flags.DEFINE_string("output", "explanations.png", "PNG to write.")
flags.DEFINE_enum("explainer", "saliency", list(visualize.EXPLAINERS), "tf-keras-vis method for the maps.")
flags.DEFINE_integer("competitors", 2, "Other classes shown beside the true class: the model's top-ranked ones.")
flags.DEFINE_integer("smooth_samples", 20, "Noisy copies per image for --explainer=smoothgrad.")
# The soft target q as introspective training makes it: the method's own declarations and defaults.
TARGET_HPARAMS = ("explanation", "similarity_temperature", "soft_target", "epsilon")
run_flags.define_hyperparameter_flags("introspective", TARGET_HPARAMS)

FLAGS = flags.FLAGS


def make_figure() -> str:
    if not 1 <= FLAGS.num_images <= 64:
        raise ConfigError(f"num_images must be in [1, 64], not {FLAGS.num_images}")
    if not FLAGS.output.endswith(".png"):
        raise ConfigError(f"output must be a .png file, not '{FLAGS.output}'")
    output_dir = os.path.dirname(os.path.abspath(FLAGS.output))
    if not os.path.isdir(output_dir):
        raise ConfigError(f"output folder '{output_dir}' does not exist")
    model = visualize.load_classifier(FLAGS.model_path)
    data = data_lib.load(
        FLAGS.dataset, batch_size=FLAGS.num_images, data_dir=FLAGS.data_dir, eval_split=FLAGS.eval_split, augment=False
    )
    if data.num_classes != model.output_shape[-1]:
        raise ConfigError(f"the model has {model.output_shape[-1]} classes but {FLAGS.dataset} has {data.num_classes}")
    images, labels = next(iter(data.eval))
    explained = visualize.explain(
        model,
        images,
        labels,
        explainer=FLAGS.explainer,
        competitors=FLAGS.competitors,
        smooth_samples=FLAGS.smooth_samples,
        similarity_temperature=FLAGS.similarity_temperature,
        soft_target=FLAGS.soft_target,
        epsilon=FLAGS.epsilon,
        explanation=FLAGS.explanation,
    )
    return visualize.plot(explained, data.class_names, FLAGS.output, explainer=FLAGS.explainer)


def main(argv):
    quiet.command_defaults()
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]} (flags look like --name=value)")
    try:
        path = make_figure()
    except ConfigError as err:
        sys.exit(f"error: {err}")
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
