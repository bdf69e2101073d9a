"""introspective_tf: introspective learning (Gu, Wu & Tresp, ACCV 2020) in Keras 3 / TensorFlow.

import introspective_tf as itf
backbone = itf.models.build("resnet20", (32, 32, 3), num_classes=10)
model = itf.methods.build("introspective", backbone, {"alpha": 0.5})
model.compile(optimizer="sgd")
model.fit(train_ds, epochs=...)
itf.export.export_classifier(backbone, "saved_models/mine")
"""

from introspective_tf import quiet

quiet.start_tensorflow()  # before anything imports TensorFlow: the log level, minus CUDA start-up notices

from introspective_tf import data, experiment, explanations, export, methods, models, soft_targets  # noqa: E402
from introspective_tf.errors import ConfigError  # noqa: E402

__all__ = ["data", "experiment", "explanations", "export", "methods", "models", "soft_targets", "ConfigError"]

# Looking at models and using them: calibration, explanation figures, a serving client, run tables.
from introspective_tf import calibration, serving, summarize, visualize  # noqa: E402

__all__ += ["calibration", "serving", "summarize", "visualize"]
