"""The informative queue in the GUI: the labeling view's 'Informative first' queue follows the ranking, the Data
view shows each pair's score with its parts and sorts by it."""

from __future__ import annotations

import math

import pytest
from conftest import add_pairs
from PySide6.QtCore import Qt

from studio.core.informative import REWARD, Scorer
from studio.store import informative as inf
from studio.ui.data_view import DataView, PairTableModel
from studio.ui.label_view import LabelView


@pytest.fixture(autouse=True)
def _own_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_SETTINGS", str(tmp_path / "settings.ini"))


@pytest.fixture
def ranked(project):
    """Five pairs a reward model is sure about except pair 4 (even odds) and pair 2 (3:1)."""
    ids = add_pairs(project, 5)
    run = project.create_run("reward", "m", {}, snapshot=[])
    scorer = Scorer(run, 7, REWARD)
    inf.write_scores(project, scorer, ids, [9.0, math.log(3), 12.0, 0.0, 15.0])
    inf.rebuild_ranking(project, [scorer])
    return project, ids, run


def test_the_labeling_view_serves_the_informative_queue_in_rank_order(qtbot, ranked):
    project, ids, run = ranked
    view = LabelView(project, "alice")
    qtbot.addWidget(view)
    view.resize(1280, 800)
    view.show()
    assert view.pair.id == ids[0]  # 'Unlabeled by me' is in id order
    view.set_queue("informative")
    assert view.queue == "informative"
    shown = []
    for _ in range(5):
        shown.append(view.pair.id)
        view.choose("left")
    assert shown == [ids[3], ids[1], ids[0], ids[2], ids[4]]
    assert view.pair is None and "Informative first" in view.empty.title.text()
    tip = view.queue_box.itemData(view.queue_box.findData("informative"), Qt.ItemDataRole.ToolTipRole)
    assert f"reward run {run} (step 7)" in tip


def test_the_informative_queue_counts_what_is_left_like_mine(qtbot, ranked):
    project, _, _ = ranked
    view = LabelView(project, "bob")
    qtbot.addWidget(view)
    view.set_queue("informative")
    view.choose("right")
    assert "4 left in queue" in view.progress.text.text()


def test_the_data_view_shows_the_score_with_its_parts_and_sorts_by_it(qtbot, ranked):
    project, ids, run = ranked
    view = DataView(project)
    qtbot.addWidget(view)
    view.resize(1280, 800)
    view.show()
    view.refresh()
    model = view.model
    col = PairTableModel.INFORMATIVE
    assert model.headerData(col, Qt.Orientation.Horizontal) == "Informative" == model.COLUMNS[col][0]
    row = [model.pair_id(i) for i in range(model.rowCount())].index(ids[3])
    assert model.data(model.index(row, col)) == "1.00"  # even odds: uncertainty 1, no labels
    tip = model.data(model.index(row, col), Qt.ItemDataRole.ToolTipRole)
    assert "uncertainty: 1.000" in tip and "checkpoints: 0 (no model gives it)" in tip
    assert "Rank 1: ranked" in tip and f"reward run {run}" in tip
    view.table.selectRow(row)
    assert "informative 1.00 (rank 1)" in view.detail_title.text()

    # a click on its header: most informative first (the queue's order), a second click: least first
    head = view.table.horizontalHeader()
    qtbot.mouseClick(head.viewport(), Qt.MouseButton.LeftButton,
                     pos=head.rect().topLeft() + type(head.rect().topLeft())(head.sectionViewportPosition(col) + 5, 5))
    qtbot.waitUntil(lambda: model.sort_key == "informative")
    assert head.sortIndicatorSection() == col and head.sortIndicatorOrder() == Qt.SortOrder.DescendingOrder
    assert [model.pair_id(i) for i in range(model.rowCount())] == [ids[3], ids[1], ids[0], ids[2], ids[4]]
    view.state_box.setCurrentIndex(view.state_box.findData("unlabeled"))  # filters keep the order
    assert model.pair_id(0) == ids[3]
    head.setSortIndicator(col, Qt.SortOrder.AscendingOrder)
    assert [model.pair_id(i) for i in range(model.rowCount())] == [ids[4], ids[2], ids[0], ids[1], ids[3]]
    head.setSortIndicator(0, Qt.SortOrder.AscendingOrder)  # the pair column: id order again
    assert [model.pair_id(i) for i in range(model.rowCount())] == ids


def test_before_any_ranking_the_column_says_how_to_make_one(qtbot, project):
    add_pairs(project, 2)
    model = PairTableModel(project)
    model.set_filters()
    assert model.data(model.index(0, PairTableModel.INFORMATIVE)) == "–"
    assert "studio rank" in model.data(model.index(0, PairTableModel.INFORMATIVE), Qt.ItemDataRole.ToolTipRole)


def test_compare_draws_the_frontier_points_of_the_compared_runs(qtbot, project):
    from studio.core.generations import Source
    from studio.store import frontier as fr
    from studio.ui.runs.frontier_chart import FrontierChart

    pid = project.add_prompt("Question?", split="eval")
    runs = [project.create_run("dpo", "m", {}, name=f"dpo-{i}", snapshot=[]) for i in range(3)]
    sources = [Source("base", "m")] + [Source(f"dpo-{i}", "m", r, 20) for i, r in enumerate(runs)]
    plan = fr.FrontierPlan("rule:x", "rule x", sources, [pid])
    values = {"samples": 4, "reward_stderr": 0.1, "kl_stderr": 0.1, "kl_k1": 0.0, "response_tokens": 5.0,
              "finished": 1.0}
    for source, kl, reward in zip(sources, (0.0, 1.0, 2.0, 3.0), (0.5, 1.5, 1.0, 2.5), strict=True):
        fr.add_point(project, None, plan, source, {**values, "kl": kl, "reward": reward})
    fr.add_point(project, None, plan, Source("dpo-0", "m", runs[0], 10), {**values, "kl": 0.5, "reward": 1.0})
    chart = FrontierChart(project)
    qtbot.addWidget(chart)
    chart.resize(400, 300)
    chart.show()
    chart.set_runs([runs[0], runs[1]], {runs[0]: "#1f77b4", runs[1]: "#d62728"})
    assert chart.plot_widget.isVisible() and not chart.empty.isVisible()
    assert chart.point_data(runs[0]) == [(0.5, 1.0), (1.0, 1.5)]  # a line through its steps, in step order
    assert chart.point_data(None) == [(0.0, 0.5)]  # the base model
    assert chart.point_data(runs[2]) == []  # not compared
    assert "rule x" in chart.title.text() and "4 samples" in chart.title.text()
    on = {(p["policy"], p["step"]): p["on_frontier"] for p in chart.points}
    # dpo-1 (KL 2, reward 1) is beaten by dpo-0 at step 20 (KL 1, reward 1.5)
    assert on == {("base", 0): True, (f"run {runs[0]}", 10): True, (f"run {runs[0]}", 20): True,
                  (f"run {runs[1]}", 20): False}
    assert "reward +1.5000 ± 0.1000" in chart.tip(next(p for p in chart.points if p["step"] == 20))
    chart.set_runs([], {})
    assert chart.empty.isVisible() and "studio frontier" in chart.empty.text()
