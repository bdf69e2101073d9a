r"""Tabulate finished runs: reads every results.json under the given folders, prints Markdown.

    python -m introspective_tf.tools.summarize runs/sweep

Runs that differ only in --seed are grouped: accuracy and loss are given as mean ± std over seeds
(`runs_table`).
"""

from __future__ import annotations

import glob
import json
import os
import statistics
import sys
from typing import Any

from introspective_tf import methods
from introspective_tf.errors import ConfigError
from introspective_tf.tools.tables import mean_std_cell, table

# Columns shown for the method's hyper-parameters, when the runs differ in them.
HPARAM_COLUMNS = ("alpha", "temperature", "similarity_temperature", "soft_target", "epsilon")
HPARAM_COLUMNS += ("explanation", "similarity", "explanation_estimator", "num_probes")  # docs/fast_introspection.md


def _hparams(result: dict) -> dict[str, Any]:
    """The run's hyper-parameters; ones it did not record (runs made before results.json recorded every
    one) count as the method's current defaults."""
    try:
        declared = methods.resolve(result["method"])
    except ConfigError:  # a method that no longer exists
        return {}
    given = result["config"].get("hparams", {})
    return {key: given.get(key, default) for key, default in declared.items()}


def _target_mass(result: dict) -> float | None:
    """The last epoch's mean mass of the soft target on the true class (methods that make one)."""
    return (result.get("final_train_metrics") or {}).get("target_true_mass")


def runs_table(results: list[dict[str, Any]]) -> str:
    """Run folders' results.json, grouped by method, model and the hyper-parameters they differ in (seeds
    pooled): mean ± std of accuracy, NLL and ECE, the soft target's mass on y, the median step time."""
    columns = [
        c for c in HPARAM_COLUMNS if len({str(_hparams(r).get(c)) for r in results if r["method"] != "standard"}) > 1
    ]
    groups: dict[tuple, list[dict]] = {}
    for result in results:
        hparams = _hparams(result)
        key = (result["method"], result["model"], *(hparams.get(c, "") for c in columns))
        groups.setdefault(key, []).append(result)
    body = []
    for key, group in sorted(groups.items(), key=lambda kv: -statistics.mean(r["eval_accuracy"] for r in kv[1])):
        steps = [r["seconds_per_step"] for r in group if r.get("seconds_per_step")]
        body.append(
            [
                *map(str, key),
                len(group),
                mean_std_cell(group, "eval_accuracy", 100),
                mean_std_cell(group, "eval_loss", digits=3),
                mean_std_cell(group, "eval_ece", 100) if all("eval_ece" in r for r in group) else "-",
                mean_std_cell(group, _target_mass, digits=2),
                f"{statistics.median(steps):.3f}" if steps else "-",
            ]
        )
    header = ["method", "model", *columns, "seeds", f"{results[0]['eval_split']} accuracy %", "loss (NLL)", "ECE %"]
    return table([*header, "target mass on y", "s/step"], body)


def load_results(folders: list[str]) -> list[dict[str, Any]]:
    paths = sorted(
        {p for folder in folders for p in glob.glob(os.path.join(folder, "**", "results.json"), recursive=True)}
    )
    results = []
    for path in paths:
        with open(path) as f:
            results.append(json.load(f))
    return results


def main(argv: list[str]) -> int:
    folders = argv[1:] or ["runs"]
    results = load_results(folders)
    if not results:
        print(f"error: no results.json under {', '.join(folders)}", file=sys.stderr)
        return 1
    print(runs_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
