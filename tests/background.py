"""Commands that slow tests read the outcome of, run in the background while other tests run (tests only).

A job is a function of a folder of its own that runs commands as separate processes (train.py, the
tools, a notebook's ...) and returns what its tests read; nothing in it computes with TensorFlow in
this process. `@background.fixture` registers it and makes a module fixture of the same name. When the
session starts, tests/conftest.py starts the jobs that the selected tests use, one after the other in
the order the tests need them, in one thread: the commands run on the second core while this process
runs the tests before them. A fixture whose job was not started (a test run on its own) runs it then.
A job that serves several parametrised tests runs its items with `each`, so that one failing item fails
only its own test.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

import pytest

JOBS: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {}
_started: dict[str, concurrent.futures.Future] = {}
_pool: concurrent.futures.ThreadPoolExecutor | None = None


def fixture(job: Callable[..., Any] | None = None, *, needs: tuple[str, ...] = ()):
    """Registers `job` and returns a module fixture named like it that gives the job's result. The job is
    called with its folder and the results of the jobs it `needs`, which run before it."""
    if job is None:
        return lambda job: fixture(job, needs=needs)
    name = job.__name__
    assert name not in JOBS, f"two background jobs named {name}"
    JOBS[name] = (job, needs)

    @pytest.fixture(scope="module", name=name)
    def result(tmp_path_factory):
        start([name], tmp_path_factory)  # started already, unless the session did not select its tests
        return _started[name].result()

    return result


class Outcomes(dict):
    """{item: what `each`'s step returned for it}; reading an item whose step raised raises that error."""

    def __getitem__(self, item):
        outcome = super().__getitem__(item)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def each(items, step: Callable[[Any], Any]) -> Outcomes:
    """`step(item)` for every item, in order; an item whose step raises keeps the error for its own test
    and the next items still run."""
    outcomes = Outcomes()
    for item in items:
        try:
            outcomes[item] = step(item)
        except Exception as error:  # noqa: BLE001  raised again when that item's test reads it
            outcomes[item] = error
    return outcomes


def start(names: list[str], tmp_path_factory) -> None:
    """Starts the jobs among `names` in that order, each after the jobs it needs (their folders are made
    here, in the main thread)."""
    global _pool
    for name in names:
        if name in JOBS and name not in _started:
            job, needs = JOBS[name]
            start(list(needs), tmp_path_factory)
            _pool = _pool or concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="background-commands")
            _started[name] = _pool.submit(_run, job, tmp_path_factory.mktemp(name), needs)


def _run(job, folder, needs):
    # One thread runs the jobs in the order they were started: the ones needed have finished.
    return job(folder, *[_started[name].result() for name in needs])


def stop() -> None:
    """Drops the jobs not begun yet and waits for the one running (its commands have timeouts)."""
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
    _pool = None
    _started.clear()
