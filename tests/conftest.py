import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = pathlib.Path(os.environ.get("INTROSPECTIVE_DATA", REPO.parent / "shared" / "data"))
MINI = DATA / "cifar10-mini"


@pytest.fixture
def mini_dataset() -> str:
    if not (MINI / "train").is_dir():
        pytest.skip(f"real data not found at {MINI} (set INTROSPECTIVE_DATA)")
    return f"folder:{MINI}"


# Two logical CPU devices, so tests can run tf.distribute strategies with 2 replicas on one CPU.
# This must happen before TensorFlow initialises its devices, i.e. before any test runs.
def _split_cpu_in_two() -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    except RuntimeError:  # already initialised (e.g. imported by another plugin): tests needing 2 skip
        pass


_split_cpu_in_two()


def pytest_collection_modifyitems(session, config, items):
    """Modules whose tests read a background job's result run last, whole and in their order, so their jobs
    (started when the session starts) run beside the other tests instead of being waited for."""
    import background

    waiting = {item.module for item in items if set(getattr(item, "fixturenames", ())) & set(background.JOBS)}
    items[:] = [item for item in items if item.module not in waiting] + [i for i in items if i.module in waiting]


@pytest.fixture(scope="session", autouse=True)
def background_commands(request, tmp_path_factory):
    """Starts the background jobs (tests/background.py) that the selected tests use, in the order they
    need them; stops what is left at the end of the session."""
    import background

    needed = [name for item in request.session.items for name in getattr(item, "fixturenames", ())]
    background.start(list(dict.fromkeys(needed)), tmp_path_factory)
    yield
    background.stop()
