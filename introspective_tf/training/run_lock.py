"""One process per run folder: a second `train.py` or `compare` that would train or resume a folder
another process is training stops at once, with one line naming the folder and that process.

The lock is the file `.run.lock` in the run folder: it holds the holder's pid, host and command, and
the holder keeps an exclusive `fcntl.flock` on it while it runs. The kernel drops a flock when its
process ends, however it ends (SIGKILL included), so a lock file that a dead process left behind is
stale and the next run simply takes it over; the pid in the file only serves the message. A run that
ends removes the file, and the folders that taking the lock created if nothing else was written to
them (a run that fails on its data leaves no empty folder behind). Nothing else in the folder is read
or changed by taking, refusing or releasing the lock.

`train.py` and `compare` take it where a run starts; `experiment.run` itself does not, so notebooks
and tests that call it directly are unaffected. On a platform without `fcntl`, or a file system that
refuses flock, runs go ahead unlocked.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

from introspective_tf.errors import ConfigError

try:
    import fcntl
except ImportError:  # not a POSIX system: no locking
    fcntl = None

LOCK_FILE = ".run.lock"


class FolderInUse(ConfigError):
    """Another live process holds the run folder's lock."""


def run_folder(config: Any) -> str:
    """The folder a run of `config` (an `ExperimentConfig`) writes, as `experiment.run` chooses it: its
    output_dir (default runs/<name>), or, for a worker of a multi-worker run that is not the chief,
    that worker's scratch folder in it (the workers of one run share the output_dir)."""
    folder = config.output_dir or os.path.join("runs", config.name)
    worker = _non_chief_worker() if config.strategy == "multiworker" else None
    return os.path.join(folder, ".workers", worker) if worker else folder


def _non_chief_worker() -> str | None:
    """The name of a TF_CONFIG task that is not the chief ("worker1"; the rule of `distribute.is_chief`), else None."""
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        task, cluster = tf_config.get("task") or {}, tf_config.get("cluster") or {}
        kind, index = task.get("type"), int(task.get("index", 0))
    except (ValueError, TypeError, AttributeError):
        return None  # experiment.run names the bad TF_CONFIG
    if kind in (None, "chief") or (kind == "worker" and index == 0 and "chief" not in cluster):
        return None
    return f"{kind}{index}"


def contents(folder: str) -> list[str]:
    """The folder's entries other than the lock file."""
    return sorted(name for name in os.listdir(folder) if name != LOCK_FILE)


@contextlib.contextmanager
def hold(folder: str) -> Iterator[None]:
    """Holds `folder`'s lock for the duration of the block, creating the folder if needed; raises
    `FolderInUse` (a `ConfigError`: one line) if a live process holds it, without touching the folder."""
    created = _make_folders(folder)
    try:
        fd = _lock(os.path.join(folder, LOCK_FILE))
    except BaseException:
        _remove_if_empty(created)
        raise
    try:
        yield
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, LOCK_FILE))  # while still locked: see _lock
            os.close(fd)
        _remove_if_empty(created)


def _make_folders(folder: str) -> list[str]:
    """Creates `folder` and its missing parents; returns the ones it created, innermost first."""
    missing, path = [], os.path.abspath(folder)
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"output_dir '{folder}' is not writable: {err.strerror}") from None
    return missing


def _remove_if_empty(folders: list[str]) -> None:
    for path in folders:
        try:
            os.rmdir(path)
        except OSError:
            return  # not empty (or gone): neither are its parents


def _lock(path: str) -> int | None:
    """Opens and flocks `path`, writes this process into it and returns the descriptor (None: no flock
    here, unlocked). A holder removes the file before it unlocks, so a lock won on a file that is no
    longer the one at `path` is dropped and taken again on the new file."""
    if fcntl is None:
        return None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ConfigError(f"output_dir '{os.path.dirname(path)}' is not writable: {err.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                return None  # a file system without flock: run unlocked
            holder = _holder(fd)
            os.close(fd)
            raise FolderInUse(_in_use_message(os.path.dirname(path), holder)) from None
        try:
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(), "since": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    return fd


def _holder(fd: int) -> dict[str, Any]:
    """What the holder wrote; it writes right after locking, so an empty file is read again briefly."""
    for _ in range(20):
        text = os.pread(fd, 4096, 0).decode(errors="replace")
        try:
            return json.loads(text)
        except ValueError:
            time.sleep(0.05)
    return {}


def _command() -> str:
    command = " ".join([os.path.basename(sys.executable), *sys.argv])
    return command if len(command) <= 120 else command[:117] + "..."


def _in_use_message(folder: str, holder: dict[str, Any]) -> str:
    who = f"process {holder['pid']}" if "pid" in holder else "another process"
    if holder.get("host") and holder["host"] != socket.gethostname():
        who += f" on {holder['host']}"
    if holder.get("command"):
        who += f" ({holder['command']})"
    return f"run folder '{folder}' is in use by {who}: wait for it to finish or stop it, or use another folder"
