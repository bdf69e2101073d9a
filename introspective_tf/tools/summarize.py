r"""Tabulate finished runs: reads every results.json under the given folders, prints Markdown.

    python -m introspective_tf.tools.summarize runs/sweep

Runs that differ only in --seed are grouped: accuracy and loss are given as mean ± std over seeds
(`report.runs_table`).
"""

from __future__ import annotations

import glob
import json
import os
import sys
from typing import Any

from introspective_tf.tools import report


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
    print(report.runs_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
