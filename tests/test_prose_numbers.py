"""Every result number in the hand-written prose of README.md and docs/*.md quotes generated text.

The README says no figure is typed by hand; the generated tables are checked against the run data by
tests/test_report.py. This test holds the prose around them to the same rule.

**What is prose.** README.md and every docs/*.md except the pages report.py writes whole (the study
pages of `report.STUDIES`: docs/results.md, docs/sweep.md), with these parts taken out: generated blocks
(`<!-- generated: NAME -->` ... `<!-- end generated -->`), HTML comments, fenced code blocks, inline
code, link targets (a link's text stays), the numbers of numbered list items, dates (2026-12-02) and the
phrases of `ALLOWED`. The rest is split into paragraphs at blank lines.

**What is a result number.** A number standing on its own, not part of a name (ResNet-20, CIFAR-10,
tau_0.01, gm0.9_a0.2, 8x8, #20329) and not in scientific notation (5e-4, 1e-5: the prose writes only
settings and tolerances that way), that either has a decimal part (0.41, 72.17, 1.000) or is directly
followed by "%", "points", a ratio's "x" or "times", or a unit of time or size (s, min, minutes, hours,
seconds, GB). A range "A-B" is two numbers. Other whole numbers are counts and configuration (3 seeds,
60 epochs, 5,000 images, C = 10, a citation's year) and are not checked. Numbers written in words ("half
a point") are not seen: write the number a table shows instead.

**Where it must come from.** A result number passes when

1. it is written the same way (the same digits and rounding; thousands separators aside; an unsigned
   number also matches a signed one, a signed one only the same sign) in the generated text of its own
   file or of a file its paragraph links to: that file's generated blocks, or the whole of a generated
   page. A whole number is quoted with its unit ("98 %" where a table writes "98 % or more"; a seed 10
   does not make "10 minutes"). A difference or a per-epoch value the prose needs is added to a
   generated table in introspective_tf/tools/report.py, not typed; or
2. it is a setting, not a result: it follows the name of a setting (alpha 0.2, tau = 0.01, T 4,
   momentum 0.9, learning rate 0.5), or, with no unit, it is a value on a run line of configs/*.cfg or a
   declared default (train.py's flags, every method's hyper-parameters). A result that happens to equal
   a setting's value passes too: results are quoted with their table's rounding, settings rarely share it.

Anything else is either rewritten to quote a table, or on the short `ALLOWED` list with its reason.

The generated text is read from the committed files; tests/test_report.py checks that it is what the
committed run data gives, so new rows that change a quoted number make this test fail until the prose
quotes the new one. The test checks that the digits are there, not that they are the row the sentence
means (a wrong number can match another cell of a large table): reading the sentence against its table
stays the author's job; the test catches numbers that no table shows at all.

A second check keeps machine names out of the prose: which CPU made a number is in the generated
provenance lines ("measured ... on ..."), which follow the rows.
"""

from __future__ import annotations

import dataclasses
import os
import re

from introspective_tf import methods
from introspective_tf.tools import report, study
from introspective_tf.training import experiment

REPO = report.__file__.rsplit("/introspective_tf/", 1)[0]

# (file, phrase as the prose writes it, whitespace folded, why its numbers are no run's data). Keep it short.
ALLOWED = [
    ("README.md", "arXiv 2009.09140", "the paper's arXiv identifier"),
    (
        "README.md",
        "Measured on 2026-12-02 on a 2-core Intel Xeon machine of this project: the full suite took 5 min 21 s with "
        "nothing else running, the quick subset 1 min 25 s beside a training run. Machines of this kind differ up to "
        "about 2.4x in speed.",
        "a dated measurement of the test suite's run time; tests are not run data",
    ),
    ("README.md", "x0.1 at 50% and 75%", "the step schedule's boundaries, constants of training/experiment.py"),
    ("docs/baselines.md", "x0.1 at 50 % and 75 %", "the OLS authors' published schedule"),
    (
        "docs/baselines.md",
        "puts only 0.105 on the label",
        "softmax(u / 20) at a = 0.99, C = 10: arithmetic, see tfkd.py",
    ),
    ("docs/baselines.md", "ranges from 0.0095 to 0.1", "alpha m / C of the published settings just listed: arithmetic"),
    ("docs/baselines.md", "reaches 0.88", "a constant of the OLS authors' fine-grained code"),
    ("docs/distribution.md", "Keras 3.15", "the version whose bugs are worked around"),
]

SETTING_NAME = re.compile(
    r"(?:\b(?:alpha|tau|eps|epsilon|beta|momentum|learning rate|weight decay|T|m|a_T)\s*=?|\ba\s*=)\s*$"
)
UNIT = r"(?P<unit>\s?%|x\b|\s(?:points?|times|s|min|minutes?|hours?|seconds?|GB)\b)?"
NUMBER = re.compile(
    r"(?:(?<=[\s(\[])(?P<sign>[+\-−])|(?<![\w.,+\-−/#]))"  # a sign after a space or bracket; not inside a name
    r"(?P<digits>\d{1,3}(?:,\d{3})+|\d+)(?P<decimals>\.\d+)?" + UNIT + r"(?![\w/]|\.\d)"
)
ANY_NUMBER = re.compile(r"(?<![\w.])(?P<number>[+\-−]?\d+(?:,\d{3})*(?:\.\d+)?)" + UNIT)  # sources; not in names
UNITS = {"%": "%", "x": "x", "times": "x", "point": "points", "s": "s", "second": "s", "minute": "min", "hour": "h"}
MACHINE = re.compile(r"\b(?:AMD|EPYC|Intel|Xeon)\b")


def _key(number: str, unit: str | None = None) -> str:
    """A number as written, without thousands separators; with its unit's name after a space if given."""
    unit = (unit or "").strip()
    unit = UNITS.get(unit, UNITS.get(unit.rstrip("s"), unit))
    return number.replace(",", "").replace("−", "-") + (f" {unit}" if unit else "")


def numbers_in(text: str) -> set[str]:
    """Every number written in `text`, signed as written and unsigned, alone and with the unit after it."""
    found = set()
    for match in ANY_NUMBER.finditer(text):
        found |= {_key(match.group("number")), _key(match.group("number"), match.group("unit"))}
    return found | {n.lstrip("+-") for n in found}


def generated_pages() -> set[str]:
    pages = set()
    for config in report.STUDIES:
        with open(os.path.join(REPO, config)) as f:
            pages.add(study.read_report_path(f.read()))
    return pages


def settings() -> set[str]:
    """Values on the run lines of configs/*.cfg and every declared default."""
    values: set[str] = set()
    folder = os.path.join(REPO, "configs")
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name)) as f:
            values |= numbers_in("".join(line for line in f if not line.lstrip().startswith("#")))
    defaults = [dataclasses.asdict(experiment.ExperimentConfig())] + [methods.resolve(m) for m in methods.METHODS]
    for value in (v for d in defaults for v in d.values()):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values |= {str(value), f"{value:g}"}
    return values


def generated_text(path: str, text: str, pages: set[str]) -> str:
    return text if path in pages else "\n".join(m.group("body") for m in report.BLOCK.finditer(text))


def paragraphs(text: str) -> list[tuple[int, str, list[str]]]:
    """(first line, folded text, link targets) of each paragraph of `text`'s prose."""

    def blank(match: re.Match) -> str:  # empty lines in its place: the line count stays
        return "\n" * match.group(0).count("\n")

    text = report.BLOCK.sub(blank, text)
    text = re.sub(r"<!--.*?-->", blank, text, flags=re.S)
    text = re.sub(r"^```.*?^```", blank, text, flags=re.S | re.M)
    result, start, lines = [], 1, []
    for number, line in enumerate(text.split("\n") + [""], 1):
        if line.strip():
            lines.append(line)
            continue
        if lines:
            body = "\n".join(re.sub(r"^\s*\d+\.\s+", "", raw) for raw in lines)
            body = re.sub(r"`[^`]*`", " ", body)
            targets = re.findall(r"\]\(([^)\s]*)\)", body)
            body = re.sub(r"\]\([^)\s]*\)", "]", body)
            result.append((start, " ".join(body.split()), targets))
        start, lines = number + 1, []
    return result


def linked_files(path: str, targets: list[str]) -> set[str]:
    linked = {path}
    for target in targets:
        target = target.split("#", 1)[0]
        if target:
            linked.add(os.path.normpath(os.path.join(os.path.dirname(path), target)))
    return linked


def prose_paragraphs(texts: dict[str, str], pages: set[str]):
    """(path, line, prose, link targets) of every hand-written paragraph, ALLOWED phrases taken out."""
    for path, text in texts.items():
        if path in pages:
            continue
        for line, prose, targets in paragraphs(text):
            for file, phrase, _ in ALLOWED:
                prose = prose.replace(phrase, " ") if file == path else prose
            yield path, line, prose, targets


def unsourced_numbers(texts: dict[str, str], pages: set[str], setting_values: set[str]) -> list[str]:
    """'file:line: number -- context' for each result number of the prose in `texts` ({path: Markdown};
    the generated pages among them are sources only) that no generated text, setting or ALLOWED phrase gives."""
    sources = {path: numbers_in(generated_text(path, text, pages)) for path, text in texts.items()}
    problems = []
    for path, line, prose, targets in prose_paragraphs(texts, pages):
        prose = re.sub(r"\b\d{4}-\d{2}-\d{2}\b", " ", prose)
        prose = re.sub(r"(?<=\d)\s?[-–]\s?(?=\d)", " to ", prose)  # a range: two numbers
        quoted = set().union(*(sources.get(f, set()) for f in linked_files(path, targets)))
        for match in NUMBER.finditer(prose):
            if not (match.group("decimals") or match.group("unit")):
                continue  # a count or configuration
            number = _key((match.group("sign") or "") + match.group("digits") + (match.group("decimals") or ""))
            if not match.group("decimals"):
                number = _key(number, match.group("unit"))  # a whole number is quoted with its unit: 98 %
            if number in quoted:
                continue
            if SETTING_NAME.search(prose[: match.start()]):
                continue
            if not match.group("unit") and number.lstrip("+-") in setting_values:
                continue
            context = prose[max(0, match.start() - 60) : match.end() + 20]
            problems.append(f"{path}:{line}: {match.group(0).strip()} -- ...{context}...")
    return problems


def _markdown() -> dict[str, str]:
    paths = ["README.md"] + [os.path.join("docs", f) for f in sorted(os.listdir(os.path.join(REPO, "docs")))]
    texts = {}
    for path in paths:
        if path.endswith(".md"):
            with open(os.path.join(REPO, path)) as f:
                texts[path] = f.read()
    return texts


def test_every_result_number_in_the_prose_quotes_generated_text_or_a_setting():
    problems = unsourced_numbers(_markdown(), generated_pages(), settings())
    assert not problems, (
        "numbers typed into the prose that no generated table of the file or of a file the paragraph links "
        "to shows (quote the table, add the number to a generated table in tools/report.py, or drop it):\n"
        + "\n".join(problems)
    )


def test_the_prose_names_no_machine_the_rows_record():
    texts, pages = _markdown(), generated_pages()
    found = []
    for path, line, prose, _ in prose_paragraphs(texts, pages):
        found += [f"{path}:{line}: {m.group(0)}" for m in MACHINE.finditer(prose)]
    assert not found, "which machine made a number is in the generated provenance lines:\n" + "\n".join(found)


def test_every_allowed_phrase_is_still_in_its_file():
    texts = _markdown()
    folded = {path: " ".join(text.split()) for path, text in texts.items()}
    assert [phrase for file, phrase, _ in ALLOWED if phrase not in folded[file]] == []


def test_a_number_the_tables_do_not_show_is_reported():
    table = "<!-- generated: x -->\n| run | accuracy % |\n|---|---|\n| dml | 72.17 ± 1.70 |\n| a | -0.41 |\n"
    table += "\nseed 10: 98 % or more\n<!-- end generated -->\n"
    texts = {
        "docs/page.md": table
        + "\nDML lands at 72.17 ± 1.70 %; introspection is 0.41 points below it (+0.41 would be wrong),\n"
        "not 0.42 points, and 98.0-98.4 % is a range; 0.2 alone is a setting, alpha 0.95 too; `0.77` is code,\n"
        "3 seeds and 5,000 images are counts, ResNet-20 and tau_0.03 names; [0.5 %](other.md) quotes other.md.\n"
        "\nIt fits 98 % of its images in 10 minutes.\n",
        "docs/other.md": "# other\n\n<!-- generated: y -->\n0.5 %\n<!-- end generated -->\n",
        "docs/whole.md": "0.61 on a generated page\n",
    }
    problems = unsourced_numbers(texts, {"docs/whole.md"}, {"0.2"})
    assert [p.split(" -- ")[0] for p in problems] == [
        "docs/page.md:10: +0.41",
        "docs/page.md:10: 0.42 points",
        "docs/page.md:10: 98.0",
        "docs/page.md:10: 98.4 %",
        "docs/page.md:14: 10 minutes",
    ]
    texts["docs/page.md"] = texts["docs/page.md"].replace("(other.md)", "(whole.md)")
    assert "docs/page.md:10: 0.5 %" in [p.split(" -- ")[0] for p in unsourced_numbers(texts, {"docs/whole.md"}, set())]
