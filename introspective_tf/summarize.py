r"""Tabulate finished runs: reads every results.json under the given folders, prints Markdown.

    python -m introspective_tf.summarize runs/sweep

Runs that differ only in --seed are grouped: accuracy and loss are given as mean ± std over seeds.
"""

from __future__ import annotations

import glob
import json
import os
import statistics
import sys
from typing import Any

from introspective_tf import methods, records
from introspective_tf.errors import ConfigError

# Columns shown for the method's hyper-parameters, when the runs differ in them.
HPARAM_COLUMNS = ("alpha", "temperature", "similarity_temperature", "soft_target", "epsilon")
HPARAM_COLUMNS += ("explanation", "similarity", "explanation_estimator", "num_probes")  # docs/fast_introspection.md


def load_results(folders: list[str]) -> list[dict[str, Any]]:
    paths = sorted(
        {p for folder in folders for p in glob.glob(os.path.join(folder, "**", "results.json"), recursive=True)}
    )
    results = []
    for path in paths:
        with open(path) as f:
            results.append(json.load(f))
    return results


def _hparams(result: dict) -> dict[str, Any]:
    """The run's hyper-parameters; ones it did not record (runs made before results.json recorded every
    one) count as the method's current defaults."""
    try:
        declared = methods.resolve(result["method"])
    except ConfigError:  # a method that no longer exists
        return {}
    given = result["config"].get("hparams", {})
    return {key: given.get(key, default) for key, default in declared.items()}


def _key(result: dict, columns: tuple[str, ...]) -> tuple:
    hparams = _hparams(result)
    return (result["method"], result["model"], *(hparams.get(c, "") for c in columns))


def markdown_table(results: list[dict[str, Any]]) -> str:
    columns = tuple(
        c for c in HPARAM_COLUMNS if len({str(_hparams(r).get(c)) for r in results if r["method"] != "standard"}) > 1
    )
    groups: dict[tuple, list[dict]] = {}
    for result in results:
        groups.setdefault(_key(result, columns), []).append(result)
    header = [
        "method",
        "model",
        *columns,
        "seeds",
        f"{results[0]['eval_split']} accuracy %",
        "loss (NLL)",
        "ECE %",
        "target mass on y",
        "s/step",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, group in sorted(groups.items(), key=lambda kv: -statistics.mean(r["eval_accuracy"] for r in kv[1])):
        mass = [r["final_train_metrics"].get("target_true_mass") for r in group if r.get("final_train_metrics")]
        mass = [m for m in mass if m is not None]
        steps = [r["seconds_per_step"] for r in group if r.get("seconds_per_step")]
        lines.append(
            "| "
            + " | ".join(
                [
                    *map(str, key),
                    str(len(group)),
                    records.mean_std([r["eval_accuracy"] for r in group], 100),
                    records.mean_std([r["eval_loss"] for r in group], 1, 3),
                    records.mean_std([r["eval_ece"] for r in group], 100)
                    if all("eval_ece" in r for r in group)
                    else "-",
                    records.mean_std(mass, 1, 2) if mass else "-",
                    f"{statistics.median(steps):.3f}" if steps else "-",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    folders = argv[1:] or ["runs"]
    results = load_results(folders)
    if not results:
        print(f"error: no results.json under {', '.join(folders)}", file=sys.stderr)
        return 1
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
