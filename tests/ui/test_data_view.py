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
    cells = [view.history.item(0, c).text() for c in range(7)]
    assert cells[:5] == ["alice", "a (shown left)", "current", "clear", "3.5"]
    assert cells[6] == "shorter"
    assert view.history.item(1, 1).text() == "b (shown left)"
    with qtbot.waitSignal(view.open_pair) as sig:
        view.open_button.click()
    assert sig.args == [ids[0]]
    # untrusted text in the details panel is plain text too
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
    rows = [[view.history.item(r, c).text() for c in (0, 1, 2)] for r in range(view.history.rowCount())]
    assert rows == [["alice", "a (shown left)", "replaced"], ["alice", "b (shown right)", "current"],
                    ["bob", "tie", "undone"]]
    grey = view.history.item(0, 0).foreground().color()
    assert grey != view.history.item(1, 0).foreground().color()
    assert view.history.item(2, 0).foreground().color() == grey
