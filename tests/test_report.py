"""Generated tables: every table in README.md and docs/ equals what the committed run data gives."""

import json
import types

import pytest

from introspective_tf.errors import ConfigError
from introspective_tf.tools import report, study, summarize, target_content


def test_every_generated_table_matches_the_committed_run_data(monkeypatch):
    monkeypatch.chdir(report.__file__.rsplit("/introspective_tf/", 1)[0])
    assert report.stale() == [], "run: python -m introspective_tf.tools.report"


def _row(name, seed, accuracy, train=0.99, seconds=0.2):
    return {
        "compare_run": name,
        "eval_accuracy": accuracy,
        "eval_loss": 1.0,
        "eval_ece": 0.05,
        "seconds_per_step": seconds,
        "final_train_metrics": {"accuracy": train - 0.01},
        "train_eval_accuracy": train,
        "config": {"seed": seed, "method": name},
        "model": "resnet20",
        "eval_split": "holdout",
        "provenance": {"code_hash": "this-code"},
    }


TARGETS = """judge introspective
target standard 1.0
target best_of:label_smoothing,pskd 0 the best teacher-free regulariser
target kd -0.5 KD from a trained teacher
"""


def test_verdict_checks_the_declared_targets_against_the_numbers(monkeypatch):
    monkeypatch.setattr(study, "current_code_hash", lambda method: "this-code")
    runs, _ = study.parse_config(
        "standard --method=standard\nintrospective --method=introspective\nlabel_smoothing --method=label_smoothing\n"
        + TARGETS,
        "runs/x",
    )
    groups = [
        (runs[0], [_row("standard", s, a) for s, a in enumerate((0.80, 0.81, 0.79))]),
        (runs[1], [_row("introspective", s, a) for s, a in enumerate((0.815, 0.825, 0.805))]),
        (runs[2], [_row("label_smoothing", s, a) for s, a in enumerate((0.82, 0.82, 0.82))]),
    ]
    text = report.verdict(groups, *study.read_verdict(TARGETS))
    assert (
        "- introspective 81.50 % vs standard 80.00 %: +1.50 points (per seed: +1.50, +1.50, +1.50; "
        "target: +1.00 or more) - met." in text
    )
    assert (
        "- introspective 81.50 % vs the best teacher-free regulariser, label_smoothing 82.00 %: -0.50 points "
        "(per seed: -0.50, +0.50, -1.50; target: 0 or more) - not met." in text
    )
    assert "interim" in text  # no kd, no pskd: not complete
    assert text.startswith("- **introspective: so far 1 of the 2 targets measured (of 3) met; interim.**")
    table = report.comparison_table(groups)
    assert table.startswith("| run | seeds | holdout accuracy % |")
    assert "| introspective | 3 | 81.50 ± 1.00 | 99.00 ± 0.00 | 1.000 ± 0.000 | 5.00 ± 0.00 |" in table


def test_a_target_line_must_say_how_many_points():
    with pytest.raises(ConfigError, match="line 2: a target's margin is a number of points, not 'much'"):
        study.read_verdict("judge introspective\ntarget standard much\n")
    with pytest.raises(ConfigError, match="line 1: expected target REFERENCE MARGIN"):
        study.read_verdict("target standard\n")


def test_runs_table_pools_seeds_and_shows_only_the_hyper_parameters_that_differ():
    def result(seed, tau, accuracy):
        return {
            "method": "introspective",
            "model": "small_cnn",
            "eval_split": "validation",
            "eval_accuracy": accuracy,
            "eval_loss": 1.0,
            "eval_ece": 0.1,
            "seconds_per_step": 0.2,
            "final_train_metrics": {"target_true_mass": 0.9},
            "config": {"seed": seed, "hparams": {"similarity_temperature": tau}},
        }

    table = summarize.runs_table([result(0, 0.05, 0.70), result(1, 0.05, 0.72), result(0, 0.1, 0.60)])
    lines = table.splitlines()
    assert lines[0] == (
        "| method | model | similarity_temperature | seeds | validation accuracy % | loss (NLL) | ECE % "
        "| target mass on y | s/step |"
    )
    assert lines[2].startswith("| introspective | small_cnn | 0.05 | 2 | 71.00 ± 1.41 |")  # best first
    assert lines[3].startswith("| introspective | small_cnn | 0.1 | 1 | 60.00 |")


def test_target_mass_table_reads_each_rows_epoch_history():
    runs, _ = study.parse_config("standard --method=standard\nintrospective --method=introspective\n", "runs/x")
    intro = [_row("introspective", s, 0.8) for s in (0, 1)]
    for row, start in zip(intro, (0.90, 0.80)):
        row["epoch_history"] = {"target_true_mass": [start, 0.95, 0.99]}
    table = report.target_mass_table([(runs[0], [_row("standard", 0, 0.8)]), (runs[1], intro)], epochs=(1, 2, 5))
    assert table.splitlines() == [
        "| run | seeds | epoch 1 | epoch 2 | epoch 3 | lowest (epoch) | second half |",
        "|---|---|---|---|---|---|---|",
        "| introspective | 2 | 0.850 | 0.950 | 0.990 | 0.850 (1) | +0.140 |",  # epoch 3 minus epoch 1 (3 // 2)
    ]
    for row, history in zip(intro, ([0.9, 0.7, 0.8, 0.95, 0.9, 0.6], [0.9, 0.7, 0.8, 0.85, 0.9, 0.6])):
        row["epoch_history"] = {"target_true_mass": history}
    table = report.target_mass_table([(runs[1], intro)], epochs=(1, 5))
    header, _, line = table.splitlines()
    assert header == "| run | seeds | epoch 1 | epoch 3 | epoch 5 | epoch 6 | lowest (epoch) | second half |"
    assert line == "| introspective | 2 | 0.900 | 0.800 | 0.900 | 0.600 | 0.600 (6) | -0.200 |"  # epoch 6 - epoch 3
    assert report.target_mass_table([(runs[0], [_row("standard", 0, 0.8)])]) == ""


def test_a_complete_comparison_says_plainly_how_many_targets_are_met_for_each_judged_line(monkeypatch):
    monkeypatch.setattr(study, "current_code_hash", lambda method: "this-code")
    names = ("standard", "introspective", "introspective_soft", "kd", "label_smoothing", "pskd")
    runs, _ = study.parse_config("".join(f"{n} --method=standard\n" for n in names), "runs/x")
    accuracy = {"standard": 0.80, "introspective": 0.805, "introspective_soft": 0.83, "kd": 0.82}
    groups = [(run, [_row(run.name, s, accuracy.get(run.name, 0.80)) for s in range(3)]) for run in runs]
    judged, targets = study.read_verdict(
        TARGETS.replace("judge introspective", "judge introspective introspective_soft")
    )
    text = report.verdict(groups, judged, targets)
    assert text.startswith("- **introspective: 1 of the 3 targets met, it falls short here.**")
    assert "- **introspective_soft: 3 of the 3 targets met.**" in text
    assert "interim" not in text
    assert text.endswith(
        "(seeds per line: introspective 3, introspective_soft 3, standard 3, label_smoothing 3, pskd 3, kd 3): final."
    )

    # A judged line still running leaves the others' verdicts final; its own says interim, or not measured.
    groups[2] = (groups[2][0], groups[2][1][:1])
    text = report.verdict(groups, judged, targets)
    assert text.startswith("- **introspective: 1 of the 3 targets met, it falls short here.**")
    assert "- **introspective_soft: so far 3 of the 3 targets measured (of 3) met; interim.**" in text
    assert text.endswith(
        "(seeds per line: introspective 3, introspective_soft 1, standard 3, label_smoothing 3, pskd 3, kd 3): final "
        "for every judged line with 3 seeds; introspective_soft still waits for its seeds (interim)."
    )
    groups[2] = (groups[2][0], [])
    text = report.verdict(groups, judged, targets)
    assert text.startswith("- **introspective: 1 of the 3 targets met, it falls short here.**")
    assert "- **introspective_soft: not measured yet** (no finished seed)." in text
    assert text.endswith("introspective_soft still waits for its seeds (interim).")


def test_regime_table_keeps_a_replaced_teacher_as_a_marked_row(monkeypatch):
    monkeypatch.setattr(study, "current_code_hash", lambda method: "this-code")
    runs, _ = study.parse_config("standard --method=standard\n", "runs/x")
    old_teacher = {**_row("teacher", 0, 0.61, train=0.83), "model": "resnet56"}
    table = report.regime_table({"c.cfg": [(runs[0], [_row("standard", 0, 0.72)])]}, {"c.cfg": [old_teacher]})
    assert "| c.cfg | standard (resnet20) | 0 | 99.00 | 98.00 | 72.00 | 27.00 |" in table
    assert "| c.cfg | earlier teacher (resnet56) | 0 | 83.00 | 82.00 | 61.00 | 22.00 |" in table


def test_soft_target_parts_table_compares_each_kd_variant_seed_by_seed(monkeypatch):
    monkeypatch.setattr(study, "current_code_hash", lambda method: "this-code")
    names = ("standard", "kd", "kd_uniform_non_gt")
    runs, _ = study.parse_config("".join(f"{n} --method=standard\n" for n in names), "runs/x")
    accuracy = {"standard": (0.70, 0.72), "kd": (0.74, 0.75), "kd_uniform_non_gt": (0.71, 0.72)}
    groups = [(run, [_row(run.name, s, a) for s, a in enumerate(accuracy[run.name])]) for run in runs]
    lines = report.soft_target_parts_table(groups).splitlines()
    assert lines[2] == (
        "| kd | the teacher's soft target | 2 | 74.50 ± 0.71 | +3.50 (+4.00, +3.00) | - | +3.00 (+3.00, +3.00) |"
    )
    assert lines[3].endswith("| 2 | 71.50 ± 0.71 | +0.50 (+1.00, +0.00) | -3.00 (-3.00, -3.00) | - |")
    assert lines[4].startswith("| kd_shuffled_non_gt |") and "not run yet" in lines[4]
    assert [line.split(" | ")[0] for line in lines[5:]] == [
        "| kd_constant_true_mass",
        "| introspective",
        "| introspective_gradcam_m0.9",
        "| introspective_input_gradient",
    ]


def test_self_target_table_pairs_each_target_from_the_models_outputs_with_its_references(monkeypatch):
    monkeypatch.setattr(study, "current_code_hash", lambda method: "this-code")
    text = "standard --method=standard\npskd --method=pskd\nonline_label_smoothing --method=online_label_smoothing\n"
    text += "kd --method=kd --teacher=t.keras\nexplained --method=pskd_explained\nlate --method=pskd_explained\n"
    runs, _ = study.parse_config(text, "runs/x")
    accuracy = {"standard": (0.70, 0.72), "pskd": (0.71, 0.74), "online_label_smoothing": (0.70, 0.70)}
    accuracy.update(kd=(0.75, 0.76), explained=(0.72, 0.73))
    groups = [(run, [_row(run.name, s, a) for s, a in enumerate(accuracy.get(run.name, ()))]) for run in runs]
    lines = report.self_target_table(groups).splitlines()
    assert lines[0].startswith("| run | method | seeds | holdout accuracy % | vs standard (per seed) | vs PS-KD")
    assert lines[2:] == [
        "| pskd | pskd | 2 | 72.50 ± 2.12 | +1.50 (+1.00, +2.00) | - | +2.50 (+1.00, +4.00) | -3.00 (-4.00, -2.00) |",
        "| online_label_smoothing | online_label_smoothing | 2 | 70.00 ± 0.00 | -1.00 (+0.00, -2.00) "
        "| -2.50 (-1.00, -4.00) | - | -5.50 (-5.00, -6.00) |",
        "| explained | pskd_explained | 2 | 72.50 ± 0.71 | +1.50 (+2.00, +1.00) | +0.00 (+1.00, -1.00) "
        "| +2.50 (+2.00, +3.00) | -3.00 (-3.00, -3.00) |",
        "| late | pskd_explained | 0 | not run yet | | | | |",
    ]  # standard and kd are references, not rows


def test_teacher_free_table_sets_every_line_without_a_teacher_against_standard_and_introspection(monkeypatch):
    monkeypatch.setattr(study, "current_code_hash", lambda method: "this-code")
    text = "standard --method=standard\nintrospective --method=introspective\npskd --method=pskd\n"
    text += "kd --method=kd --teacher=t.keras\ndml --method=dml\nlabel_smoothing --method=label_smoothing\n"
    runs, _ = study.parse_config(text, "runs/x")
    accuracy = {"standard": (0.70, 0.72), "introspective": (0.69, 0.73), "pskd": (0.71, 0.73), "kd": (0.8, 0.8)}
    accuracy["dml"] = (0.72, 0.70)
    groups = [(run, [_row(run.name, s, a) for s, a in enumerate(accuracy.get(run.name, ()))]) for run in runs]
    lines = report.teacher_free_table(groups).splitlines()
    assert lines[0] == "| run | seeds | holdout accuracy % | vs standard (per seed) | introspective vs it (per seed) |"
    assert lines[2:6] == [
        "| introspective | 2 | 71.00 ± 2.83 | +0.00 (-1.00, +1.00) | - |",
        "| pskd | 2 | 72.00 ± 1.41 | +1.00 (+1.00, +1.00) | -1.00 (-2.00, +0.00) |",
        "| dml | 2 | 71.00 ± 1.41 | +0.00 (+2.00, -2.00) | +0.00 (-3.00, +3.00) |",
        "| label_smoothing | 0 | not run yet | | |",
    ]  # no standard, no kd line
    assert lines[-1] == "Above standard training on every seed: pskd. Widest spread over seeds: introspective (± 2.83)."


def test_target_content_rows_say_which_images_they_were_measured_on():
    held_out = {"num_images": 2000, "eval_split": "holdout"}  # written before `images` existed
    training = {"num_images": 2000, "eval_split": "holdout", "images": "training", "num_train": 5000}
    assert target_content._analysed_images(held_out) == "first 2000 of holdout"
    assert target_content._analysed_images({**held_out, "images": "held_out"}) == "first 2000 of holdout"
    assert target_content._analysed_images(training) == "2000 of the 5000 training images"


def test_a_sweep_declares_its_grid_and_rule_on_its_page_from_the_config():
    text = "common --epochs=1\n#> **Rule.** The best mean wins.\n#>\n# a comment\nstandard --method=standard\n"
    assert study.read_declarations(text) == "**Rule.** The best mean wins.\n"


def test_target_content_rows_name_the_softness_setting_and_the_spread_over_images():
    assert target_content._softness({"similarity_temperature": 0.01, "target_true_mass": 0.0}) == "0.01"
    assert target_content._softness({"similarity_temperature": 0.01, "target_true_mass": 0.75}) == "mass 0.75 (batch)"
    result = {"intro_true_class_mass": 0.75, "intro_true_class_mass_std": 0.125, "teacher_true_class_mass": 0.6}
    assert target_content._mass(result, "intro") == "0.750 ± 0.125"
    assert target_content._mass(result, "teacher") == "0.600"  # measured before the spread was recorded


def test_replication_table_sets_every_row_of_a_replicated_run_and_seed_side_by_side(monkeypatch, tmp_path):
    monkeypatch.setattr(study, "current_code_hash", lambda method: "this-code")
    runs, _ = study.parse_config("common --eval_split=holdout\npskd --method=pskd\n", "runs/x")

    def made(seed, accuracy, date, cpu, code="this-code"):
        row = _row("pskd", seed, accuracy)
        row["config"]["eval_split"] = "holdout"
        row["provenance"] = {"code_hash": code, "date": date, "machine": {"cpu": cpu, "cpu_count": 2}}
        return row

    current = [made(0, 0.70, "2026-12-02T10:00", "Intel"), made(1, 0.71, "2026-12-02T11:00", "Intel")]
    earlier = made(0, 0.72, "2026-11-26T10:00", "AMD", code="older-code")
    data = tmp_path / "compare.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in [earlier, *current]))
    comparison = types.SimpleNamespace(data_path=str(data))
    replicated = [(runs[0], [made(0, 0.725, "2026-12-03T10:00", "AMD")])]
    lines = report.replication_table(replicated, comparison, [(runs[0], current)]).splitlines()
    assert lines[0].startswith("| run | seed | made | machine | training code | holdout accuracy % |")
    assert lines[2:] == [
        "| pskd | 0 | 2026-11-26 | AMD, 2 cores, no GPU | older-code | 72.00 | +2.00 | 99.00 | 1.000 | 5.00 "
        "| no (earlier code) |",
        "| pskd | 0 | 2026-12-02 | Intel, 2 cores, no GPU | this-code | 70.00 | - | 99.00 | 1.000 | 5.00 | yes |",
        "| pskd | 0 | 2026-12-03 | AMD, 2 cores, no GPU | this-code | 72.50 | +2.50 | 99.00 | 1.000 | 5.00 "
        "| no (the replication) |",
    ]  # seed 1 was not replicated
    assert report.replication_table([(runs[0], [])], comparison, [(runs[0], current)]).startswith("Not run yet")


CHOICES = """seeds 10 11
a --method=standard
b --method=standard --weight_decay=1e-4
c --method=standard --weight_decay=1e-3
choose wd a b c
"""


def _scored(name, seed, accuracy, nll):
    return {**_row(name, seed, accuracy), "eval_loss": nll, "eval_split": "validation"}


def test_a_declared_choice_takes_the_best_mean_and_breaks_a_tie_under_a_tenth_of_a_point_by_nll(monkeypatch):
    monkeypatch.setattr(study, "current_code_hash", lambda method: "this-code")
    runs, _ = study.parse_config(CHOICES, "runs/x")
    a, b, c = runs[0], runs[2], runs[4]
    choices = study.read_choices(CHOICES)
    assert choices == [study.Choice("wd", ("a", "b", "c"))]
    groups = [
        (a, [_scored("a", 10, 0.700, 1.10), _scored("a", 11, 0.710, 1.10)]),  # 70.50
        (b, [_scored("b", 10, 0.706, 1.00), _scored("b", 11, 0.703, 1.00)]),  # 70.45: a tie, lower NLL
        (c, [_scored("c", 10, 0.690, 0.90), _scored("c", 11, 0.690, 0.90)]),  # 69.00
    ]
    text = report.choice_table(groups, choices, [10, 11])
    assert "| wd | b | 10, 11 | 70.45 ± 0.21 | 1.000 ± 0.000 | **chosen** (tie with a: lower NLL) |" in text
    assert "| wd | a | 10, 11 | 70.50 ± 0.71 | 1.100 ± 0.000 | tie with b: higher NLL |" in text
    assert "| wd | c | 10, 11 | 69.00 ± 0.00 | 0.900 ± 0.000 | -1.45 points |" in text
    # 0.10 points is no longer a tie.
    groups[1] = (b, [_scored("b", 10, 0.706, 1.00), _scored("b", 11, 0.702, 1.00)])  # 70.40
    text = report.choice_table(groups, choices, [10, 11])
    assert "| wd | a | 10, 11 | 70.50 ± 0.71 | 1.100 ± 0.000 | **chosen** |" in text
    assert "| wd | b | 10, 11 | 70.40 ± 0.28 | 1.000 ± 0.000 | -0.10 points |" in text

    # Beyond the tie, accuracy decides; with a seed missing the choice is not final.
    groups[0] = (a, [_scored("a", 10, 0.720, 1.10), _scored("a", 11, 0.720, 1.10)])
    groups[2] = (c, [_scored("c", 10, 0.690, 0.90)])
    text = report.choice_table(groups, choices, [10, 11])
    assert "| wd | a | 10, 11 | 72.00 ± 0.00 | 1.100 ± 0.000 | leads so far |" in text
    assert "| wd | b | 10, 11 | 70.40 ± 0.28 | 1.000 ± 0.000 | -1.60 points |" in text
    groups[2] = (c, [])
    assert "| wd | c | - | not run | - | waiting for its seeds |" in report.choice_table(groups, choices, [10, 11])
    assert report.choice_table(groups, [], [10, 11]) == ""


def test_a_choice_must_name_two_run_lines_of_its_config():
    with pytest.raises(ConfigError, match="line 5: choose names no run line called d"):
        study.read_choices(CHOICES.replace("choose wd a b c", "choose wd a d"))
    with pytest.raises(ConfigError, match="line 5: expected choose NAME LINE LINE"):
        study.read_choices(CHOICES.replace("choose wd a b c", "choose wd a"))
