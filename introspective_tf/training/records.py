"""Finished runs as data: one JSON object per line, committed beside the docs they feed.

A row is a run's `results.json` without its per-epoch loss history (the history is in the run
folder's `history.csv`): configuration, metrics (validation and training accuracy, NLL, ECE, step
time) and provenance (commit, training-code hash, date, machine). Tables in README and docs/ are made
from these files by `python -m introspective_tf.tools.report`, never typed by hand.
"""

from __future__ import annotations

import json
import os
import statistics
from typing import Any

from introspective_tf.errors import ConfigError
from introspective_tf.training import resume

_NOT_KEPT = ("train_loss_history", "export_dir")


def row_from_results(results: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in results.items() if k not in _NOT_KEPT}


def read(path: str) -> list[dict[str, Any]]:
    """The rows of `path` in file order; [] if it does not exist."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    except OSError as err:
        raise ConfigError(f"cannot read run data '{path}': {err.strerror}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise ConfigError(f"{path}, line {number}: not a JSON row; fix or remove that line") from None
    return rows


def _identity(row: dict[str, Any]) -> str:
    """What a row measured: a later row with the same identity replaces it. Training runs: run name,
    configuration, teacher and training code; code equivalences (equivalence.py): the two hashes;
    benchmark rows: model, choice, class count and batch."""
    if "same_as" in row:
        return json.dumps([row["code_hash"], row["same_as"]])
    if "config" not in row:
        return json.dumps(
            [row.get(k) for k in ("model", "method", "num_classes", "batch_size", "image_shape")], default=str
        )
    config = {k: v for k, v in row["config"].items() if k not in ("output_dir", "export_dir", "verbose")}
    code = row.get("provenance", {}).get("code_hash")
    return json.dumps([row.get("compare_run"), config, row.get("teacher"), code], sort_keys=True, default=str)


def add(path: str, row: dict[str, Any]) -> None:
    """Appends `row`, replacing an earlier row of the same run, configuration and code (a rerun).
    The file is rewritten atomically: an interruption leaves the old file or the new one."""
    kept = [r for r in read(path) if _identity(r) != _identity(row)]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in [*kept, row])
    resume.write_text_atomically(path, text)


def mean_std(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """ "mean ± sample std" of `values` times `scale` (the mean alone for one value): every table's cell."""
    mean = statistics.mean(values) * scale
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"
