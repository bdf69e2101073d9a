r"""Remakes every generated table in README.md and docs/ from the committed run data.

    python -m introspective_tf.report            # rewrite what changed
    python -m introspective_tf.report --check    # exit 1 if a file differs from what the data gives

Sources: each study config in `STUDIES` (its `data` file of finished runs, `results/*.jsonl`) gives
its report page (`docs/results.md`, `docs/sweep.md`, through `compare`), and `results/benchmark.jsonl`
(`python -m introspective_tf.benchmark --output=...`) the step-time tables. In Markdown files a
generated block sits between `<!-- generated: NAME -->` and `<!-- end generated -->`; only the text
between the markers is replaced, so prose around a table stays the authors'. A test runs `--check`, so
a table cannot drift from its data.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
from typing import Callable

from introspective_tf import compare, records

STUDIES = ("configs/sweep_cifar10.cfg", "configs/compare_cifar10.cfg")
COMPARISON = "configs/compare_cifar10.cfg"
SWEEP = "configs/sweep_cifar10.cfg"
BENCHMARK_DATA = "results/benchmark.jsonl"
TARGET_CONTENT_DATA = "results/target_content.json"
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)

# The comparison's run lines that the README's verdict names.
SELF_REGULARISERS = ("label_smoothing", "confidence_penalty", "pskd", "tfkd_reg")


def _mean(rows: list[dict], key: Callable[[dict], float | None]) -> float | None:
    values = [v for v in map(key, rows) if v is not None]
    return statistics.mean(values) if values else None


def _accuracy(row: dict) -> float:
    return 100 * row["eval_accuracy"]


def comparison_table(groups) -> str:
    """A compact table of a study: one line per run line with finished seeds (step times: the benchmark)."""
    lines = ["| run | seeds | validation accuracy % | train accuracy % | NLL | ECE % |", "|---|---|---|---|---|---|"]
    for run, rows in groups:
        if run.name == compare.TEACHER:
            continue
        if not rows:
            lines.append(f"| {run.name} | 0 | not run yet | | | |")
            continue
        train = [100 * a for a in map(compare._fit_accuracy, rows) if a is not None]
        eces = [100 * r["eval_ece"] for r in rows if r.get("eval_ece") is not None]
        older = sum(not compare.made_by_current_code(r) for r in rows)
        lines.append(
            "| "
            + " | ".join(
                [
                    run.name,
                    f"{len(rows)}" + (f" ({older}†)" if older else ""),
                    records.mean_std([_accuracy(r) / 100 for r in rows], 100),
                    records.mean_std([t / 100 for t in train], 100) if train else "-",
                    records.mean_std([r["eval_loss"] for r in rows], 1, 3),
                    records.mean_std([e / 100 for e in eces], 100) if eces else "-",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def verdict(groups) -> str:
    """The issue's targets checked against the comparison's numbers, as generated Markdown bullets."""
    by_name = {run.name: rows for run, rows in groups}

    def accuracy(name: str) -> tuple[float | None, int]:
        rows = by_name.get(name, [])
        return _mean(rows, _accuracy), len(rows)

    intro, intro_n = accuracy("introspective")
    standard, standard_n = accuracy("standard")
    kd, kd_n = accuracy("kd")
    peers = {name: accuracy(name) for name in SELF_REGULARISERS if accuracy(name)[0] is not None}
    lines = []
    if intro is None or standard is None:
        return "- Not measured yet: the comparison has no finished introspective and standard runs."
    complete = min([intro_n, standard_n, kd_n or 0, *(n for _, n in peers.values())]) >= 3 and len(peers) == len(
        SELF_REGULARISERS
    )
    lines.append(
        f"- Introspective {intro:.2f} % vs standard {standard:.2f} %: {intro - standard:+.2f} points "
        f"(target: +1.00 or more) - {'met' if intro - standard >= 1.0 else 'not met'}."
    )
    if peers:
        best = max(peers, key=lambda n: peers[n][0])
        lines.append(
            f"- Best teacher-free regulariser measured: {best} {peers[best][0]:.2f} %; introspective "
            f"{intro - peers[best][0]:+.2f} points (target: 0 or more) - "
            f"{'met' if intro >= peers[best][0] else 'not met'}."
        )
    if kd is not None:
        lines.append(
            f"- KD from a trained teacher {kd:.2f} %; introspective {intro - kd:+.2f} points "
            f"(target: -0.50 or more) - {'met' if intro - kd >= -0.5 else 'not met'}."
        )
    seeds = f"seeds per line: introspective {intro_n}, standard {standard_n}" + (
        f", kd {kd_n}" if kd is not None else ""
    )
    lines.append(
        f"- Means over the seeds finished so far ({seeds})"
        + (
            "."
            if complete
            else "; the comparison is not complete yet (3 seeds of every line), so these are interim numbers."
        )
    )
    return "\n".join(lines)


def regime_table(studies: dict[str, list]) -> str:
    """Does standard training fit its data? Training vs validation accuracy of the reference lines of
    each study (per seed), from their run data."""
    lines = [
        "| study | run | seed | train accuracy % | running train accuracy % | validation accuracy % | gap (points) |",
        "|---|---|---|---|---|---|---|",
    ]
    for config, groups in studies.items():
        for run, rows in groups:
            if run.name not in ("standard", "label_smoothing", compare.TEACHER):
                continue
            for row in sorted(rows, key=lambda r: r["config"]["seed"]):
                fit, running = compare._fit_accuracy(row), compare._train_accuracy(row)
                fit_text = f"{100 * fit:.2f}" if fit is not None else "-"
                gap = f"{100 * fit - _accuracy(row):.2f}" if fit is not None else "-"
                lines.append(
                    f"| {os.path.basename(config)} | {run.name} ({row['model']}) | {row['config']['seed']} | "
                    f"{fit_text} | {100 * running:.2f} | {_accuracy(row):.2f} | {gap} |"
                )
    if len(lines) == 2:
        return "Not measured yet."
    standard = [
        row
        for groups in studies.values()
        for run, rows in groups
        if run.name == "standard"
        for row in rows
        if compare._fit_accuracy(row) is not None
    ]
    summary = ""
    if standard:
        fits = [100 * compare._fit_accuracy(r) for r in standard]
        gaps = [100 * compare._fit_accuracy(r) - _accuracy(r) for r in standard]
        reached = sum(f >= 98.0 for f in fits)
        summary = (
            f"\n\nStandard training over {len(fits)} runs: training accuracy {min(fits):.2f}-{max(fits):.2f} % "
            f"(98 % or more in {reached} of {len(fits)}), {statistics.mean(gaps):.1f} points above validation "
            "accuracy on average."
        )
    return "\n".join(lines) + summary


def benchmark_table(rows: list[dict]) -> str:
    """Step-time ratios to standard per (model, choice, class count), from benchmark rows."""
    if not rows:
        return "Not measured yet: run `python -m introspective_tf.benchmark --output=results/benchmark.jsonl`."
    counts = sorted({r["num_classes"] for r in rows})
    choices = list(dict.fromkeys((r["model"], r["method"]) for r in rows))
    header = "| model | choice | " + " | ".join(f"C = {c}" for c in counts) + " |"
    lines = [header, "|---|---|" + "---|" * len(counts)]
    for model, choice in choices:
        cells = []
        for c in counts:
            found = [r for r in rows if (r["model"], r["method"], r["num_classes"]) == (model, choice, c)]
            cells.append(f"{found[-1]['ratio']:.2f} ({found[-1]['median_seconds']:.3f} s)" if found else "-")
        lines.append(f"| {model} | `{choice}` | " + " | ".join(cells) + " |")
    origins = sorted(
        {
            f"{r['provenance']['machine']['cpu']} ({r['provenance']['machine']['cpu_count']} cores), "
            f"{r['provenance']['date'][:10]}, commit {(r['provenance']['git_commit'] or 'unknown')[:10]}"
            for r in rows
        }
    )
    return (
        "\n".join(lines)
        + "\n\nRatio to `standard` in the same process (median step time in brackets); measured on "
        + "; ".join(origins)
        + "."
    )


def blocks() -> dict[str, str]:
    """Every named generated block's Markdown."""
    studies = {config: compare.load_study(config).groups() for config in STUDIES}
    groups = studies[COMPARISON]
    return {
        "comparison": comparison_table(groups),
        "sweep": comparison_table(studies[SWEEP]),
        "verdict": verdict(groups),
        "regime": regime_table(studies),
        "benchmark": benchmark_table(records.read(BENCHMARK_DATA)),
        "target-content": target_content_table(TARGET_CONTENT_DATA),
    }


def target_content_table(path: str) -> str:
    """What the introspective target carries against a teacher's soft targets (target_content.py's JSON)."""
    if not os.path.exists(path):
        return f"Not measured yet: the command above writes `{path}`."
    import json

    from introspective_tf import target_content

    with open(path) as f:
        result = json.load(f)
    origin = result.get("provenance", {})
    return (
        target_content.markdown_table(result) + f"\n\n{result.get('num_images', '?')} held-out images; model "
        f"`{result.get('model_path')}`, teacher `{result.get('teacher_path')}`; "
        f"measured {origin.get('date', '?')[:10]} "
        f"at commit {(origin.get('git_commit') or 'unknown')[:10]}.\n\n"
        "![Class-mean non-GT distributions of both targets and the confusion matrix](figures/target_content.png)"
    )


def _fill(text: str, generated: dict[str, str], path: str) -> str:
    def replace(match):
        name = match.group("name")
        if name not in generated:
            raise SystemExit(f"error: {path} has a generated block '{name}' that report.py does not make")
        return f"{match.group(1)}{generated[name]}\n{match.group(4)}"

    return BLOCK.sub(replace, text)


def outputs() -> dict[str, str]:
    """{path: its generated text} for every study page and every Markdown file with generated blocks."""
    result = {}
    for config in STUDIES:
        study = compare.load_study(config)
        result[study.report_path] = study.report()
    generated = blocks()
    markdown = ["README.md"] + [os.path.join("docs", f) for f in sorted(os.listdir("docs")) if f.endswith(".md")]
    for path in markdown:
        text = result.get(path)
        if text is None:
            with open(path) as f:
                text = f.read()
        if BLOCK.search(text):
            result[path] = _fill(text, generated, path)
    return result


def stale() -> list[str]:
    """The files whose text differs from what the committed data gives."""
    different = []
    for path, text in outputs().items():
        try:
            with open(path) as f:
                same = f.read() == text
        except FileNotFoundError:
            same = False
        if not same:
            different.append(path)
    return different


def main(argv: list[str]) -> None:
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if "--check" in argv[1:]:
        different = stale()
        if different:
            sys.exit(
                f"error: generated text differs from the run data in {', '.join(different)}: "
                "run python -m introspective_tf.report"
            )
        print("every generated table matches the run data")
        return
    for path, text in outputs().items():
        with open(path, "w") as f:
            f.write(text)
        print(f"wrote {path}")
    for config in STUDIES:  # the charts beside the study pages
        study = compare.load_study(config)
        if records.read(study.data_path):
            compare.bar_chart(
                study.groups(),
                study.chart_path,
                f"{os.path.splitext(os.path.basename(config))[0]}: mean ± std over seeds",
            )


if __name__ == "__main__":
    main(sys.argv)
