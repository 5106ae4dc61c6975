"""The data view: lazily paged pairs table, filters, label history."""

from __future__ import annotations

from conftest import add_pairs
from PySide6.QtCore import QModelIndex

from studio.ui.data_view import DataView, PairTableModel


def test_model_fetches_pages_lazily(project, monkeypatch):
    monkeypatch.setattr(PairTableModel, "PAGE", 10)
    add_pairs(project, 25)
    model = PairTableModel(project)
    model.set_filters()
    assert model.rowCount() == 10
    assert model.canFetchMore(QModelIndex())
    model.fetchMore(QModelIndex())
    model.fetchMore(QModelIndex())
    assert model.rowCount() == 25
    assert not model.canFetchMore(QModelIndex())
    assert [model.pair_id(i) for i in range(25)] == sorted(model.pair_id(i) for i in range(25))
    assert model.total() == 25


def test_filters_and_history(qtbot, pairs_project):
    project = pairs_project
    ids = project.pair_ids()
    project.record_label(ids[0], "alice", "a", "a", strength="clear", rationale="shorter", seconds=3.5)
    project.record_label(ids[0], "bob", "b", "b")
    project.record_label(ids[1], "alice", "a", "b")
    project.record_label(ids[1], "bob", "a", "a")
    project.record_label(ids[2], "alice", "tie", "a")
    view = DataView(project)
    qtbot.addWidget(view)
    view.show()
    view.refresh()

    def shown():
        return [view.model.pair_id(i) for i in range(view.model.rowCount())]

    assert len(shown()) == 14 and view.total_label.text() == "14 pairs"
    view.state_box.setCurrentIndex(view.state_box.findData("labeled"))
    assert shown() == ids[:3]
    view.state_box.setCurrentIndex(view.state_box.findData("unlabeled"))
    assert shown() == ids[3:]
    view.state_box.setCurrentIndex(0)
    view.agreement_box.setCurrentIndex(view.agreement_box.findData("disagree"))
    assert shown() == [ids[0]]
    view.agreement_box.setCurrentIndex(view.agreement_box.findData("agree"))
    assert shown() == [ids[1]]
    view.agreement_box.setCurrentIndex(0)
    view.annotator_box.setCurrentIndex(view.annotator_box.findData("bob"))
    assert shown() == ids[:2]
    view.annotator_box.setCurrentIndex(0)
    view.search_edit.setText("Eval question 3")
    view.apply_filters()
    assert len(shown()) == 1 and project.pair(shown()[0]).prompt.text == "Eval question 3?"
    view.search_edit.setText("")
    view.apply_filters()

    view.table.selectRow(0)
    assert view.current_pair_id() == ids[0]
    assert view.history.rowCount() == 2
    cells = [view.history.item(0, c).text() for c in range(8)]
    assert cells[:6] == ["alice", "A better", "A", "current", "clear", "3.5"]
    assert cells[7] == "shorter"
    assert [view.history.item(1, c).text() for c in (1, 2)] == ["B better", "B"]
    with qtbot.waitSignal(view.open_pair) as sig:
        view.open_button.click()
    assert sig.args == [ids[0]]
    # the pair is rendered as the labeling view shows it: the prompt above, A and B side by side
    pair = project.pair(ids[0])
    assert view.preview.a.browser.toPlainText() == pair.a.text.strip()
    assert view.preview.b.browser.toPlainText().startswith("The answer to 0 plus 0")
    assert view.detail_text.refused == []


def test_history_shows_a_relabel_and_an_undo_with_past_labels_greyed(qtbot, pairs_project):
    project = pairs_project
    pid = project.pair_ids()[0]
    project.record_label(pid, "alice", "a", "a")
    project.record_label(pid, "alice", "b", "a")  # relabeled: the first label is replaced
    undone = project.record_label(pid, "bob", "tie", "b")
    project.undo_label(undone)
    view = DataView(project)
    qtbot.addWidget(view)
    view.show()
    view.refresh()
    view.table.selectRow(0)
    rows = [[view.history.item(r, c).text() for c in (0, 1, 2, 3)] for r in range(view.history.rowCount())]
    assert rows == [["alice", "A better", "A", "replaced"], ["alice", "B better", "A", "current"],
                    ["bob", "tie", "B", "undone"]]
    grey = view.history.item(0, 0).foreground().color()
    assert grey != view.history.item(1, 0).foreground().color()
    assert view.history.item(2, 0).foreground().color() == grey


def _shown(view) -> list[int]:
    return [view.model.pair_id(i) for i in range(view.model.rowCount())]


def make_data_view(qtbot, project) -> DataView:
    view = DataView(project)
    qtbot.addWidget(view)
    view.resize(1024, 700)
    view.show()
    qtbot.waitExposed(view)
    view.refresh()
    return view


def test_columns_sort_by_a_click_and_pages_follow_the_order(qtbot, pairs_project, monkeypatch):
    from PySide6.QtCore import Qt

    monkeypatch.setattr(PairTableModel, "PAGE", 5)  # sorted rows also come a page at a time
    p = pairs_project
    ids = p.pair_ids()
    p.record_label(ids[7], "alice", "a", "a", seconds=50)
    p.record_label(ids[7], "bob", "b", "a", seconds=10)
    p.record_label(ids[3], "alice", "a", "a", seconds=2)
    view = make_data_view(qtbot, p)
    head = view.table.horizontalHeader()
    labels = [c[0] for c in PairTableModel.COLUMNS].index("Labels")
    qtbot.mouseClick(head.viewport(), Qt.MouseButton.LeftButton, pos=head.rect().topLeft() +
                     type(head.rect().topLeft())(head.sectionViewportPosition(labels) + 5, 5))
    qtbot.waitUntil(lambda: view.model.sort_key == "labels")
    order = _shown(view)
    # one click: ascending (unlabeled pairs first, in id order), a second: most labels first
    assert order[:5] == [i for i in ids if i not in (ids[3], ids[7])][:5] and len(order) == 5
    head.setSortIndicator(labels, Qt.SortOrder.DescendingOrder)
    assert _shown(view)[:2] == [ids[7], ids[3]]
    view.table.scrollToBottom()
    qtbot.waitUntil(lambda: view.model.rowCount() == 14)
    time_col = [c[0] for c in PairTableModel.COLUMNS].index("Time")
    head.setSortIndicator(time_col, Qt.SortOrder.DescendingOrder)
    assert _shown(view)[:2] == [ids[7], ids[3]] and view.model.rows[0][time_col] == "30.0 s"
    agreement = [c[0] for c in PairTableModel.COLUMNS].index("Agreement")
    head.setSortIndicator(agreement, Qt.SortOrder.DescendingOrder)
    assert _shown(view)[0] == ids[7] and view.model.rows[0][agreement] == "disagree 50%"
    # the prompt column does not sort: the indicator goes back and the order stays
    head.setSortIndicator([c[0] for c in PairTableModel.COLUMNS].index("Prompt"), Qt.SortOrder.AscendingOrder)
    assert head.sortIndicatorSection() == agreement and _shown(view)[0] == ids[7]


def test_arrow_keys_move_through_pairs_and_never_change_a_filter(qtbot, pairs_project):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    view = make_data_view(qtbot, pairs_project)
    assert view.table.hasFocus() or QApplication.focusWidget() in (None, view.table)
    view.table.setFocus()
    view.table.selectRow(0)
    qtbot.keyClick(view.table, Qt.Key.Key_Down)
    assert view.current_pair_id() == pairs_project.pair_ids()[1]
    for box in (view.state_box, view.annotator_box, view.agreement_box):
        box.setFocus()
        before = box.currentIndex()
        qtbot.keyClick(box, Qt.Key.Key_Down)
        assert box.currentIndex() == before, "an arrow opens the list; only a pick changes the filter"
        popup = QApplication.activePopupWidget()
        assert popup is not None
        popup.close()
    assert len(_shown(view)) == 14


def test_flagged_filter_imported_labels_and_empty_states(qtbot, pairs_project):
    p = pairs_project
    ids = p.pair_ids()
    p.record_label(ids[2], "import:data.jsonl", "a", "a")
    p.record_label(ids[2], "alice", "b", "b")
    p.flag_pair(ids[2], "alice", "check the maths")
    view = make_data_view(qtbot, p)
    view.flagged_check.setChecked(True)
    assert _shown(view) == [ids[2]]
    view.table.selectRow(0)
    assert "check the maths" in view.flags_label.text() and view.clear_flags_button.isVisible()
    saw = {view.history.item(r, 0).text(): view.history.item(r, 2).text() for r in range(view.history.rowCount())}
    assert saw == {"import:data.jsonl": "— (imported)", "alice": "B"}
    view.clear_flags_button.click()
    assert p.flags(ids[2]) == [] and not view.flags_label.isVisible()
    view.apply_filters()
    assert view.stack.currentWidget() is view.empty and "No pair matches" in view.empty.title.text()
    view.empty.button("Clear filters").click()
    assert not view.flagged_check.isChecked() and len(_shown(view)) == 14 and view.stack.currentWidget() is view.body


def test_the_selected_pair_and_its_history_show_beside_the_table_on_a_wide_window_and_in_tabs_on_a_narrow_one(
        qtbot, pairs_project):
    view = make_data_view(qtbot, pairs_project)  # narrow: below the table, in tabs
    view.table.selectRow(0)
    assert view.detail_stack.currentWidget() is view.detail_tabs and view.preview.isVisible()
    view.resize(1920, 1080)  # wide: beside the table, both at once (they used to stay hidden once moved)
    qtbot.waitUntil(lambda: view.detail_stack.currentWidget() is view.detail_split)
    assert view.preview.isVisible() and view.history_box.isVisible()
    view.resize(1024, 700)
    qtbot.waitUntil(lambda: view.detail_stack.currentWidget() is view.detail_tabs)
    assert view.preview.isVisible()
