"""introspective_tf: introspective learning (Gu, Wu & Tresp, ACCV 2020) in Keras 3 / TensorFlow.

    import introspective_tf as itf
    from introspective_tf import training

    data = training.data.load("cifar10", batch_size=128)
    backbone = itf.models.build("resnet20", data.image_shape, data.num_classes)
    model = itf.methods.build("introspective", backbone, {"alpha": 0.5})
    model.compile(optimizer="sgd")
    model.fit(data.train, epochs=...)
    itf.export.export_classifier(backbone, "saved_models/mine")

The package is layered; imports only run downwards:

* `introspective_tf` (this level): the method -- backbones (`models`), self-explanations
  (`explanations`), soft targets, the methods and their registry (`methods/`), export and teachers.
* `introspective_tf.training`: running an experiment -- data, the training run, distribution,
  resuming, calibration, provenance and result rows.
* `introspective_tf.tools`: reading and using what runs produce -- comparisons and reports,
  benchmarks, explanation figures, a serving client.
"""

from introspective_tf import quiet

quiet.start_tensorflow()  # before anything imports TensorFlow: the log level, minus CUDA start-up notices

from introspective_tf import explanations, export, methods, models, soft_targets  # noqa: E402
from introspective_tf.errors import ConfigError  # noqa: E402

__all__ = ["explanations", "export", "methods", "models", "soft_targets", "ConfigError"]
