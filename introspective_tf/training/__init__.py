"""Running an experiment with a method of `introspective_tf`: data, the training run (`experiment`),
`tf.distribute` strategies, crash-safe resuming, calibration, and the provenance and result rows
every run records. Uses the core package; never the tools."""

from introspective_tf.training import calibration, data, distribute, experiment, provenance, records, resume

__all__ = ["calibration", "data", "distribute", "experiment", "provenance", "records", "resume"]
