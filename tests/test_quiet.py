"""TensorFlow's start-up notices are dropped, every other line written to stderr meanwhile is kept; the
commands drop the absl notices that precede a clearer error and print warnings without a source line."""

import os

from introspective_tf import quiet


def test_filtered_stderr_drops_the_notices_and_keeps_everything_else(capfd):
    with quiet.filtered_stderr(("oneDNN custom operations are on", "failed call to cuInit")):
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on. You may see ...\n")
        os.write(2, b"E0000 some_op.cc:1] a real error\n")
        os.write(2, b"E0000 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n")
        os.write(2, b"last line without newline")
    err = capfd.readouterr().err
    assert err == "E0000 some_op.cc:1] a real error\nlast line without newline"


def test_the_no_driver_notice_is_dropped_only_without_a_driver(monkeypatch):
    monkeypatch.setattr(quiet, "_has_nvidia_driver", lambda: True)
    assert "failed call to cuInit" not in quiet._notices()
    monkeypatch.setattr(quiet, "_has_nvidia_driver", lambda: False)
    assert "failed call to cuInit" in quiet._notices()


def test_the_tfds_variant_notice_is_dropped_and_other_absl_warnings_are_kept(monkeypatch):
    import io
    import logging

    from absl import logging as absl_logging

    logger = logging.getLogger("absl")
    monkeypatch.setattr(logger, "filters", list(logger.filters))  # restored after the test
    monkeypatch.setattr(logger, "handlers", [])
    collected = io.StringIO()
    logger.addHandler(logging.StreamHandler(collected))
    quiet.drop_absl_notices()
    quiet.drop_absl_notices()  # once per process, however often it is called
    assert sum(isinstance(f, quiet._DropNotices) for f in logger.filters) == 1
    absl_logging.warning("Variant folder %s has no %s", "/tmp/tfds/cifar10/3.0.2", "dataset_info.json")
    absl_logging.warning("Variant folder %s has invalid version %s", "/tmp/tfds/cifar10/x", "x")
    absl_logging.warning("something else has no dataset_info.json")
    assert collected.getvalue().splitlines() == [
        "Variant folder /tmp/tfds/cifar10/x has invalid version x",
        "something else has no dataset_info.json",
    ]


def test_a_warning_prints_without_the_source_line_under_it():
    line = quiet.warning_without_source_line(
        UserWarning("a clear message"), UserWarning, "/x/y.py", 7, "warnings.warn(msg)"
    )
    assert line == "/x/y.py:7: UserWarning: a clear message\n"


def test_the_commands_install_both(monkeypatch):
    import logging
    import warnings

    from absl import logging as absl_logging

    logger = logging.getLogger("absl")
    monkeypatch.setattr(logger, "filters", list(logger.filters))
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    verbosity = absl_logging.get_verbosity()
    try:
        quiet.command_defaults()
    finally:
        absl_logging.set_verbosity(verbosity)
    assert warnings.formatwarning is quiet.warning_without_source_line
    assert any(isinstance(f, quiet._DropNotices) for f in logger.filters)
