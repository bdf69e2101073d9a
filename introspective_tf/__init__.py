"""introspective_tf: introspective learning (Gu, Wu & Tresp, ACCV 2020) in Keras 3 / TensorFlow.

    import introspective_tf as itf
    backbone = itf.models.build("resnet20", (32, 32, 3), num_classes=10)
    model = itf.methods.build("introspective", backbone, {"alpha": 0.5})
    model.compile(optimizer="sgd")
    model.fit(train_ds, epochs=...)
    itf.export.export_classifier(backbone, "saved_models/mine")
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported; the user's value wins

from introspective_tf import data, experiment, explanations, export, methods, models, soft_targets
from introspective_tf.errors import ConfigError

__all__ = ["data", "experiment", "explanations", "export", "methods", "models", "soft_targets", "ConfigError"]

# Looking at models and using them: calibration, explanation figures, a serving client, run tables.
from introspective_tf import calibration, serving, summarize, visualize  # noqa: E402

__all__ += ["calibration", "serving", "summarize", "visualize"]
