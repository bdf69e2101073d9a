"""One process per run folder: a second train.py or compare is refused in one line naming the folder and
the holder, without changing the folder; a lock left by a process that is gone is taken over."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from commands import run_forked
from conftest import REPO

from introspective_tf.errors import ConfigError
from introspective_tf.tools import compare, study
from introspective_tf.training import experiment, run_lock

# The holder loads run_lock.py (which needs only the standard library and errors.py) without the package's
# __init__, which would start TensorFlow: a lock holder that starts in a fraction of a second.
HOLDER = textwrap.dedent(
    """
    import os, sys, types
    for name in ("introspective_tf", "introspective_tf.training"):  # run from the repository's root
        sys.modules[name] = types.ModuleType(name)
        sys.modules[name].__path__ = [os.path.join(os.getcwd(), *name.split("."))]
    from introspective_tf.training import run_lock
    assert "tensorflow" not in sys.modules
    with run_lock.hold(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.read()  # until the test closes stdin (or kills this process)
    """
)


@contextlib.contextmanager
def _holders():
    """Starts small Python processes that each hold a folder's lock until stdin closes (start(folder) returns
    its Popen); they are stopped on leaving."""
    started = []

    def start(folder):
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(folder)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout.readline() == "held\n"
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.stdin.close()
                process.wait(timeout=30)


@pytest.fixture
def holder():
    with _holders() as start:
        yield start


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != run_lock.LOCK_FILE}


def test_hold_records_this_process_and_leaves_no_trace(tmp_path):
    folder = tmp_path / "new" / "run"
    with run_lock.hold(str(folder)):
        record = json.loads((folder / run_lock.LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] and record["command"]
        assert run_lock.contents(str(folder)) == []
    assert not (tmp_path / "new").exists()  # made for the lock, empty again: removed
    with run_lock.hold(str(folder)):
        (folder / "results.json").write_text("{}")
    assert sorted(os.listdir(folder)) == ["results.json"]


def test_a_second_holder_in_this_process_is_refused_and_the_lock_is_released_on_error(tmp_path):
    with pytest.raises(KeyError):
        with run_lock.hold(str(tmp_path)):
            with pytest.raises(run_lock.FolderInUse, match=f"process {os.getpid()}"):
                with run_lock.hold(str(tmp_path)):
                    pass
            raise KeyError("the run failed")
    with run_lock.hold(str(tmp_path)):  # released by the failure
        pass


def test_an_unwritable_folder_is_a_config_error(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ConfigError, match="output_dir '.*a-file/run' is not writable"):
        with run_lock.hold(str(tmp_path / "a-file" / "run")):
            pass
    assert (tmp_path / "a-file").read_text() == "x"


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    """A train.py and a compare command, each pointed at a run folder another process holds, run as
    `python train.py ...` and `python -m introspective_tf.tools.compare ...` would be. Both stop before
    TensorFlow computes anything, so they run in processes forked from one interpreter that started
    TensorFlow once (tests/commands.py). {"train": (result, folder, its holder, the folder's files before),
    "compare": (result, runs_dir, the holder of runs_dir/a-seed0)}; the holders run until the module ends."""
    from conftest import MINI

    if not (MINI / "train").is_dir():
        pytest.skip("real data not found")
    mini_dataset = f"folder:{MINI}"
    tmp_path = tmp_path_factory.mktemp("refused")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_text('{"eval_accuracy": 0.9}')
    (folder / "history.csv").write_text("epoch,loss\n0,1.0\n")
    before = _snapshot(folder)
    config = tmp_path / "mini.cfg"
    config.write_text(
        f"common --dataset={mini_dataset} --model=small_cnn --epochs=1 --steps_per_epoch=1 --batch_size=16 "
        "--eval_split=validation\nseeds 0\na --method=standard\nb --method=label_smoothing\n"
    )
    runs_dir = tmp_path / "runs"
    with _holders() as start:
        train_holder, compare_holder = start(folder), start(runs_dir / "a-seed0")
        train_py, compare_py = run_forked(
            [
                [
                    "train.py",
                    f"--dataset={mini_dataset}",
                    "--model=small_cnn",
                    "--method=standard",
                    "--epochs=1",
                    "--steps_per_epoch=1",
                    f"--output_dir={folder}",
                    "--export_dir=none",
                ],
                ["-m", "introspective_tf.tools.compare", f"--config={config}", f"--runs_dir={runs_dir}"],
            ],
            cwd=REPO,
            env=dict(os.environ),
        )
        yield {"train": (train_py, folder, train_holder, before), "compare": (compare_py, runs_dir, compare_holder)}


@pytest.mark.slow
def test_train_py_refuses_a_folder_another_process_holds(refused):
    done, folder, process, before = refused["train"]
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: run folder '{folder}' is in use by process {process.pid} "
        f"({os.path.basename(sys.executable)} -c {folder}): wait for it to finish or stop it, or use another folder"
    ]
    assert _snapshot(folder) == before and process.poll() is None  # the holder runs on, its folder unchanged


@pytest.mark.slow
def test_compare_stops_at_a_run_another_process_holds(refused):
    done, runs_dir, process = refused["compare"]
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: run folder '{runs_dir / 'a-seed0'}' is in use by process {process.pid} "
        f"({os.path.basename(sys.executable)} -c {runs_dir / 'a-seed0'}): wait for it to finish or stop it, "
        "or use another folder"
    ]
    assert sorted(os.listdir(runs_dir)) == ["a-seed0"]  # stopped there: b was not trained meanwhile
    assert run_lock.contents(str(runs_dir / "a-seed0")) == []


@pytest.mark.slow
def test_a_lock_whose_process_was_killed_is_taken_over(tmp_path, holder):
    folder = tmp_path / "run"
    process = holder(folder)
    process.send_signal(signal.SIGKILL)  # no clean-up: the lock file stays, with a dead pid in it
    process.wait(timeout=30)
    left = json.loads((folder / run_lock.LOCK_FILE).read_text())
    assert left["pid"] == process.pid
    with run_lock.hold(str(folder)):
        assert json.loads((folder / run_lock.LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (folder / run_lock.LOCK_FILE).exists()


def test_a_lock_file_that_no_process_holds_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / run_lock.LOCK_FILE).write_text(json.dumps({"pid": 999999999, "host": "elsewhere"}))
    with run_lock.hold(str(folder)):
        assert json.loads((folder / run_lock.LOCK_FILE).read_text())["pid"] == os.getpid()
    assert os.listdir(folder) == []


def test_compare_keeps_its_lock_while_it_clears_a_stale_run(tmp_path, monkeypatch):
    runs, _ = study.parse_config("a --method=standard\n", str(tmp_path))
    folder = tmp_path / "a-seed0"
    folder.mkdir()
    (folder / "compare_config.json").write_text('{"another": "configuration"}')
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.weights.h5").write_text("weights")

    def run(config, extra_results=None):
        assert run_lock.contents(config.output_dir) == ["compare_config.json"]  # cleared but for the lock
        with pytest.raises(run_lock.FolderInUse):
            with run_lock.hold(config.output_dir):
                pass
        raise ConfigError("stop here")

    monkeypatch.setattr(experiment, "run", run)
    with pytest.raises(ConfigError, match="stop here"):
        compare.train(runs[0], None)
    assert not (folder / run_lock.LOCK_FILE).exists()


def test_each_worker_of_a_multi_worker_run_locks_the_folder_it_writes(monkeypatch):
    config = experiment.ExperimentConfig(output_dir="runs/x", strategy="multiworker")
    cluster = {"worker": ["a:1", "b:2"]}
    for task, folder in [
        ({"type": "worker", "index": 0}, "runs/x"),
        ({"type": "worker", "index": 1}, "runs/x/.workers/worker1"),
    ]:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
        assert run_lock.run_folder(config) == folder
    chief = {"cluster": {"chief": ["c:0"], **cluster}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(chief))
    assert run_lock.run_folder(config) == "runs/x/.workers/worker0"
    monkeypatch.setenv("TF_CONFIG", "{not json")
    assert run_lock.run_folder(config) == "runs/x"  # experiment.run names the bad TF_CONFIG
    assert run_lock.run_folder(experiment.ExperimentConfig(model="small_cnn")) == os.path.join(
        "runs", "cifar10-small_cnn-introspective-seed0"
    )
