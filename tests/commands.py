"""Running the project's commands in tests for less than one TensorFlow start-up each (used by tests only).

run_forked: many short commands (`python train.py ...`, `python -m introspective_tf.tools.X ...`) that stop
before TensorFlow computes anything (flag checks, refusals of bad input). One interpreter started as
`python` would be, from `cwd`, imports TensorFlow and the package once; each command then runs in a process
forked from it, as the interpreter runs a script or a `-m` module: as `__main__`, with its own argv,
sys.path[0], absl flags, exit code, stdout and stderr. Commands that compute with TensorFlow do not belong
there (its runtime is not made to be used in a forked child): run_concurrently runs those as separate
processes, two at a time, so that one's start-up overlaps another's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

# The interpreter's own handling of a script: SystemExit's code (a message goes to stderr, exit code 1),
# an uncaught exception's traceback. os._exit: the child never runs the parent's exit handlers.
_DRIVER = r"""
import json, os, runpy, signal, sys, tempfile, traceback

MARK = "----- results -----"
ALARM = int(sys.argv[1])

sys.path[0] = os.getcwd()
import introspective_tf  # noqa: F401  TensorFlow and Keras, once
import introspective_tf.training.experiment  # noqa: F401

results = []
for argv in json.loads(sys.stdin.read()):
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    sys.stdout.flush(), sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.alarm(ALARM)  # a command that went on to train would hang the driver: it is killed instead
            os.dup2(out.fileno(), 1), os.dup2(err.fileno(), 2)
            try:
                if argv[0] == "-m":  # python -m MODULE: sys.path[0] is the working folder
                    sys.argv = [argv[1], *argv[2:]]
                    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
                else:  # python SCRIPT: sys.path[0] is the script's folder
                    sys.argv = list(argv)
                    sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
                    runpy.run_path(argv[0], run_name="__main__")
                code = 0
            except SystemExit as stop:
                if stop.code is None or isinstance(stop.code, int):
                    code = stop.code or 0
                else:
                    print(stop.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
        finally:
            try:
                sys.stdout.flush(), sys.stderr.flush()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    out.seek(0), err.seek(0)
    results.append([os.waitstatus_to_exitcode(status), out.read().decode(), err.read().decode()])
sys.stdout.write("\n" + MARK + json.dumps(results))
"""

_MARK = "----- results -----"


def run_forked(
    commands: list[list[str]], *, cwd, env=None, timeout: float = 600, per_command_timeout: int = 120
) -> list[subprocess.CompletedProcess]:
    """Each command is the argv after the interpreter (`["train.py", "--flag"]`, `["-m", "module", ...]`);
    returns one CompletedProcess per command, in order (a command still running after per_command_timeout
    seconds is killed by SIGALRM: return code -14)."""
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(per_command_timeout)],
        cwd=cwd,
        env=env or {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        input=json.dumps([list(map(str, command)) for command in commands]),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [
        subprocess.CompletedProcess([sys.executable, *command], code, out, err)
        for command, (code, out, err) in zip(commands, json.loads(done.stdout.split(_MARK)[-1]))
    ]


def run_concurrently(commands: list[list[str]], *, cwd, env=None, timeout: float = 600, workers: int = 2):
    """Runs whole commands (full argv) as separate processes, `workers` at a time (the machines have 2 cores:
    one command's TensorFlow start-up overlaps another's); one CompletedProcess per command, in order."""
    import concurrent.futures

    def run(command):
        return subprocess.run(
            list(map(str, command)),
            cwd=cwd,
            env=env or {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, commands))
