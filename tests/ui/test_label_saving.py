"""Saving labels when the project is busy or open twice: the window never waits on the write lock, and
two windows labeling as one annotator never replace or undo each other's labels unseen."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import add_pairs
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from studio.store import Project
from studio.ui.label_view import LabelView
from studio.ui.main_window import MainWindow


@pytest.fixture
def folder(tmp_path):
    with Project.create(tmp_path / "proj") as p:
        add_pairs(p, 6)
    return tmp_path / "proj"


def view_on(qtbot, folder, annotator="alice") -> LabelView:
    """A labeling view with its own connection, as a window of its own has."""
    project = Project.open(folder)
    view = LabelView(project, annotator)
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.show()
    qtbot.waitExposed(view)
    view.destroyed.connect(project.close)
    return view


def current(folder, pair_id: int):
    with Project.open(folder) as p:
        return p.current_label(pair_id, "alice"), p.label_history(pair_id)


def key(qtbot, view, k, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    view.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is view)
    view.setFocus()
    qtbot.keyClick(view, k, modifier)


# ---------------------------------------------------------------------------------------------- busy


def test_a_save_behind_a_held_lock_goes_on_off_the_gui_thread(qtbot, folder):
    view = view_on(qtbot, folder)
    pair_id = view.pair.id
    view.rationale.setText("the left one cites its source")
    other = Project.open(folder)
    other._conn.execute("BEGIN IMMEDIATE")  # another process (an import, a worker) holds the write lock
    try:
        started = time.monotonic()
        key(qtbot, view, Qt.Key.Key_1)
        returned_after = time.monotonic() - started
        assert "Saving" in view.note.text() and view.pair.id == pair_id
        assert view.rationale.text() == "the left one cites its source"
        assert not view.choice_buttons["left"].isEnabled()
        key(qtbot, view, Qt.Key.Key_2)  # no second verdict while the first is being saved
        # the window answers meanwhile: events are processed, display keys work
        key(qtbot, view, Qt.Key.Key_M)
        assert view.raw
        assert current(folder, pair_id)[0] is None
    finally:
        with qtbot.waitSignal(view.labeled, timeout=20_000):
            other._conn.execute("COMMIT")
        other.close()
    label, history = current(folder, pair_id)
    assert label is not None and label.rationale == "the left one cites its source"
    assert view.pair.id != pair_id and view.choice_buttons["left"].isEnabled()
    assert returned_after < 5, "the key press came back long before the 15 s busy timeout"
    assert len(history) == 1, "the second key press saved nothing"
    # once saved, it is confirmed and listed as a label saved at once is
    progress = view.progress
    qtbot.waitUntil(lambda: progress._saved_note is not None and progress.saved_note.text() == "✓ Saved: Left better")
    assert view.progress.recent_strip.buttons[0].property("pair_id") == pair_id and view.progress.session.labels == 1


# ---------------------------------------------------------------------------------------------- two windows


def test_a_second_window_for_the_same_annotator_is_warned_until_the_first_closes(qtbot, folder):
    first = MainWindow(folder, annotator="alice")
    qtbot.addWidget(first)
    assert first.notice_label.isHidden()
    second = MainWindow(folder, annotator="alice")
    qtbot.addWidget(second)
    assert not second.notice_label.isHidden()
    assert "Another window is labeling as alice" in second.notice_label.text()
    other_name = MainWindow(folder, annotator="bob")
    qtbot.addWidget(other_name)
    assert other_name.notice_label.isHidden()
    first.close()
    second.close()
    third = MainWindow(folder, annotator="alice")
    qtbot.addWidget(third)
    assert third.notice_label.isHidden(), "closing released the lock"
    third.close()
    other_name.close()


def test_a_window_whose_process_is_gone_does_not_warn(qtbot, folder):
    code = ("import sys; from studio.store import Project\n"
            "p = Project.open(sys.argv[1]); print(p.open_session('alice')[0])")  # exits without closing it
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, capture_output=True)
    w = MainWindow(folder, annotator="alice")
    qtbot.addWidget(w)
    assert w.notice_label.isHidden()
    w.close()


def test_labels_from_two_windows_never_replace_each_other_unseen(qtbot, folder):
    a, b = view_on(qtbot, folder), view_on(qtbot, folder)
    pair_id = a.pair.id
    assert b.pair.id == pair_id
    key(qtbot, a, Qt.Key.Key_1)
    first = a.project.current_label(pair_id, "alice")
    with qtbot.waitSignal(b.save_failed):
        key(qtbot, b, Qt.Key.Key_2)
    assert "labeled meanwhile as alice in another window" in b.note.text()
    assert b.pair.id == pair_id and b.project.current_label(pair_id, "alice").id == first.id
    key(qtbot, b, Qt.Key.Key_2)  # seen now: the second press replaces it
    assert b.project.current_label(pair_id, "alice").id != first.id
    assert [lab.state.value for lab in b.project.label_history(pair_id)] == ["replaced", "current"]


def test_undo_undoes_only_the_windows_own_last_label(qtbot, folder):
    a, b = view_on(qtbot, folder), view_on(qtbot, folder)
    mine = a.pair.id
    key(qtbot, a, Qt.Key.Key_1)
    theirs = a.pair.id  # b labels the pair a shows next, after a's label
    b.show_pair(theirs)
    key(qtbot, b, Qt.Key.Key_2)
    key(qtbot, a, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert a.pair.id == mine and a.project.current_label(mine, "alice") is None
    assert a.project.current_label(theirs, "alice") is not None, "the other window's label stays"
    key(qtbot, a, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert "Nothing to undo" in a.note.text()
    assert a.project.current_label(theirs, "alice") is not None
