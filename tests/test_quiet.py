"""TensorFlow's start-up notices are dropped; every other line written to stderr meanwhile is kept."""

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
