"""The report says what its results are (issue 21, section 3): random weights in the header
before the first table, degenerate classifiers marked in the tables, cells of one table scored
over different numbers of folds named, grammatical Friedman notes, readable efficiency axes."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest

from progbench.evaluate.results import evaluate_tree
from progbench.report import build_report
from progbench.report.data import Setting, prepare
from progbench.report.figures import efficiency_figure, figure_style
from progbench.report.significance import setting_stats
from progbench.report.tables import fold_count_note, summary_table, to_markdown
from tests.helpers.runs import GOOD, Y, build_run
from tests.helpers.runtree import evaluated_tree

CONSTANT = [0.3] * len(Y)
FULL = Setting.of("full", None)


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """lp over 3 folds; lora over 2 folds, its fold 0 a constant (one-class) classifier."""
    root = tmp_path_factory.mktemp("flags") / "runs"
    for fold in range(3):
        build_run(root, Y, GOOD, fold=fold, strategy="lp")
    build_run(root, Y, CONSTANT, fold=0, strategy="lora")
    build_run(root, Y, GOOD, fold=1, strategy="lora")
    return root, evaluate_tree(root, n_boot=0).results


def test_tables_mark_degenerate_cells_and_uneven_fold_counts(
    small_tree: tuple[Path, pd.DataFrame],
) -> None:
    data = prepare(small_tree[1], "mcc")
    table = summary_table(data, FULL)
    long = table.long.set_index("strategy")
    assert long.loc["lora", "n_degenerate"] == 1 and long.loc["lp", "n_degenerate"] == 0
    md = to_markdown(table, data)
    lora_row = next(line for line in md.splitlines() if line.startswith("| t | b |"))
    assert lora_row.count("†") == 1 and "one class in 1 run(s)" in lora_row
    note = fold_count_note(table)
    assert note is not None and "3 for most" in note and "t / b / lora (2)" in note
    assert note in md


def test_report_header_and_notes(small_tree: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    result = build_report(small_tree[1], tmp_path / "report", metrics="mcc")
    html = result.html.read_text()
    first_table = html.index("<table")
    random = html.index("Random weights: 5 of 5 runs (b)")
    degenerate = html.index("Degenerate classifiers: 1 run(s) in 1 table cell(s)")
    assert random < first_table and degenerate < first_table
    assert 'class="warning"' in html[:first_table]
    assert "scored over different numbers of folds" in html
    assert any("different numbers of folds" in n for n in result.notes)
    friedman = [n for n in result.notes if "Friedman" in n]
    assert friedman == [
        "MCC, Full data: Friedman test not run: it needs at least 3 strategies, this setting "
        "has 2 strategies (the Wilcoxon test compares the two)"
    ]
    assert "Random weights" in (tmp_path / "report" / "mcc" / "tables.md").read_text()


def test_no_flag_for_pretrained_weights() -> None:
    _, results = evaluated_tree()
    results["weights"] = "imagenet"
    data = prepare(results, "mcc")
    from progbench.report.page import flag_paragraphs

    assert flag_paragraphs(data) == []
    results["weights"] = "random"
    assert flag_paragraphs(prepare(results, "mcc"))[0].text.startswith("Random weights:")


def test_friedman_note_for_one_strategy(small_tree: tuple[Path, pd.DataFrame]) -> None:
    results = small_tree[1]
    data = prepare(results[results["strategy"] == "lp"], "mcc")
    note = setting_stats(data, FULL).friedman_note
    assert note == (
        "not run: it needs at least 3 strategies, this setting has 1 strategy "
        "(nothing to compare it with)"
    )


def test_efficiency_axis_labels_powers_of_ten_slanted() -> None:
    _, results = evaluated_tree()
    fig = efficiency_figure(prepare(results, "mcc"))
    assert fig is not None
    with figure_style():
        fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels and set(labels) <= {"0.001", "0.01", "0.1", "1", "10", "100", "1000"}
    assert all(t.get_rotation() == 30 for t in ax.get_xticklabels())
    assert not [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]
    # No two labels overlap on the drawn panel.
    boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()]
    assert all(a.x1 <= b.x0 for a, b in itertools.pairwise(boxes))


def test_per_centre_tables_mark_a_degenerate_fold() -> None:
    from progbench.report.centres import centre_markdown, centre_table
    from tests.helpers.runtree import TreeSpec

    tree = TreeSpec(
        tasks=("death",),
        backbones=("resnet18",),
        strategies=("lp", "fft"),
        fewshot_tasks=(),
        schemes=("loco",),
        n_test=10,
        n_val=4,
    )
    _, results = evaluated_tree(tree)
    one = (
        (results["level"] == "run")
        & (results["strategy"] == "lp")
        & (results["test_center"] == "south")
    )
    results.loc[one, "n_degenerate"] = 1
    data = prepare(results, "mcc")
    table = centre_table(data, FULL)
    assert table is not None
    md = centre_markdown(table, data)
    lp_row = next(line for line in md.splitlines() if "| lp |" in line)
    cells = [c.strip() for c in lp_row.strip().strip("|").split("|")[3:]]
    marked = [centre for centre, c in zip(table.centres, cells, strict=True) if "†" in c]
    assert marked == ["south"]
    assert "†" not in next(line for line in md.splitlines() if "| fft |" in line)
