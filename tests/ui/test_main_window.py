"""The main window: opening projects, recent projects, sections, annotator, closing, import from the GUI."""

from __future__ import annotations

import json

import pytest
from conftest import add_pairs

from studio.store import Project
from studio.ui import prefs
from studio.ui.import_dialog import ImportDialog
from studio.ui.main_window import MainWindow


@pytest.fixture
def folder(tmp_path):
    with Project.create(tmp_path / "proj", name="My prefs") as p:
        add_pairs(p, 6)
        p.set_setting("salt", "fixed-for-test")  # a known left/right draw per annotator
    return tmp_path / "proj"


def make_window(qtbot, folder=None, annotator="alice") -> MainWindow:
    w = MainWindow(folder, annotator=annotator)
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    return w


def run_import(qtbot, dialog: ImportDialog, path) -> None:
    """Import a file through the dialog and wait for the job to end."""
    dialog.path_edit.setText(str(path))
    job = dialog.start()
    qtbot.waitUntil(job.isFinished, timeout=20_000)


def test_open_shows_name_counts_and_remembers(qtbot, folder):
    w = make_window(qtbot)
    assert w.project is None and w.stack.currentWidget() is w.welcome
    assert w.open_project(folder)
    assert w.name_label.text() == "My prefs"
    assert "6 pairs" in w.counts_label.text() and "0 labeled" in w.counts_label.text()
    qtbot.waitUntil(lambda: prefs.recent_projects() == [str(folder.resolve())])  # saved once the window is up
    # a label updates the always-visible counts
    w.label_view.choose("left")
    w.refresh_counts()
    assert "1 labeled" in w.counts_label.text()


def test_open_missing_project_says_why(qtbot, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("studio.ui.main_window.QMessageBox.warning", lambda *a: shown.append(a[2]))
    w = make_window(qtbot)
    assert not w.open_project(tmp_path / "nothing")
    assert "no project here" in shown[0]


def test_data_view_opens_pair_in_label_view(qtbot, folder):
    w = make_window(qtbot, folder)
    data = w.show_section("Data")
    data.refresh()
    data.table.selectRow(4)
    pid = data.current_pair_id()
    data.open_button.click()
    assert w.tabs.currentWidget() is w.label_view
    assert w.label_view.pair.id == pid


def test_switch_annotator(qtbot, folder):
    w = make_window(qtbot, folder)
    w.label_view.choose("left")
    w.set_annotator("bob")
    assert w.label_view.annotator == "bob"
    assert "bob" in w.annotator_button.text()
    # bob gets his own queue (the pair alice labeled is still his to do) and his own left/right draw
    view, p = w.label_view, w.project
    ids = p.pair_ids()
    assert view.pair.id == ids[0] and p.current_label(ids[0], "bob") is None
    assert view.shown_left == p.shown_left(ids[0], "bob")
    assert any(p.shown_left(i, "alice") != p.shown_left(i, "bob") for i in ids)
    assert "bob</b>: 0 labeled" in view.progress.text.text()
    w.label_view.choose("right")
    with Project.open(folder) as p:
        assert set(p.annotators()) == {"alice", "bob"}
    assert prefs.default_annotator() == "bob"


def test_runs_section_is_lazy_and_can_cancel_close(qtbot, folder, monkeypatch):
    w = make_window(qtbot, folder)
    assert w.runs_panel is None
    panel = w.show_section("Runs")
    assert panel is w.runs_panel and w.tabs.currentWidget() is panel
    monkeypatch.setattr(type(panel), "confirm_close", lambda self: False)
    w.close()
    assert w.isVisible() and w.project is not None
    monkeypatch.setattr(type(panel), "confirm_close", lambda self: True)
    w.close()
    assert not w.isVisible() and w.project is None


def test_import_from_the_gui(qtbot, folder, tmp_path):
    w = make_window(qtbot, folder)
    good = tmp_path / "new.jsonl"
    good.write_text("".join(json.dumps({"prompt": f"New prompt {i}", "response_a": "yes", "response_b": "no"}) + "\n"
                            for i in range(3)))
    dialog = ImportDialog(w.project, w)
    qtbot.addWidget(dialog)
    dialog.imported.connect(w.data_changed)
    run_import(qtbot, dialog, good)
    qtbot.waitUntil(lambda: "Imported" in dialog.status.text())
    assert w.project.pair_count() == 9
    assert "9 pairs" in w.counts_label.text()

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "ok", "response_a": "x", "response_b": "y"}) + "\n"
                   + json.dumps({"prompt": "missing b", "response_a": "x"}) + "\n")
    run_import(qtbot, dialog, bad)
    qtbot.waitUntil(lambda: dialog.errors.count() > 0)
    assert "Nothing was imported" in dialog.status.text()
    assert "bad.jsonl:2" in dialog.errors.item(0).text()
    assert w.project.pair_count() == 9, "nothing half-imported"


def test_export_from_the_gui_shows_progress_and_how_much_it_writes(qtbot, folder, tmp_path):
    from studio.ui.import_dialog import ExportDialog

    w = make_window(qtbot, folder)
    view = w.label_view
    for side in ("left", "right", "tie", "tie"):
        view.choose(side)
    view.undo()  # an undone label is in the labels export too: it is history
    dialog = ExportDialog(w.project, w)
    qtbot.addWidget(dialog)
    dialog.format_box.setCurrentIndex(dialog.format_box.findData("labels"))
    dialog.path_edit.setText(str(tmp_path / "labels.jsonl"))
    job = dialog.start()
    assert dialog.progress.maximum() == 0, "busy while the store writes"
    qtbot.waitUntil(job.isFinished, timeout=20_000)
    qtbot.waitUntil(lambda: "Wrote" in dialog.status.text())
    assert dialog.expected_rows == 4
    assert "Wrote 4 rows" in dialog.status.text()
    assert dialog.progress.value() == dialog.progress.maximum() == 1

    dialog.format_box.setCurrentIndex(dialog.format_box.findData("trl"))
    dialog.path_edit.setText(str(tmp_path / "prefs.jsonl"))
    job = dialog.start()
    qtbot.waitUntil(job.isFinished, timeout=20_000)
    qtbot.waitUntil(lambda: "Wrote" in dialog.status.text())
    assert dialog.expected_rows == 2, "the resolved preferences (the tie is left out)"
    assert "Wrote 2 rows" in dialog.status.text() and "1 tie" in dialog.status.text()


def test_only_the_label_section_is_built_at_start(qtbot, folder):
    w = make_window(qtbot, folder)
    assert w.data_view is None and w.runs_panel is None and w._welcome is None
    assert w.label_view.pair is not None, "the first pair is on screen"
    assert w.label_view._overlay is None, "the ? help is built when first asked for"
    # the Data tab builds its view when clicked, in its place, and it follows labels from then on
    w.tabs.setCurrentIndex(1)
    assert w.data_view is not None and w.tabs.currentWidget() is w.data_view
    assert [w.tabs.tabText(i) for i in range(w.tabs.count())] == ["Label", "Data", "Runs"]
    qtbot.waitUntil(lambda: w.data_view.model.rowCount() == 6)
    w.show_section("Label")
    pair = w.label_view.pair.id
    w.label_view.choose("left")
    data = w.show_section("Data")
    qtbot.waitUntil(lambda: data.history.rowCount() == 1 and data.current_pair_id() == pair)


def test_a_project_closed_at_once_is_still_remembered(qtbot, folder):
    w = make_window(qtbot, folder)
    assert prefs.recent_projects() == [], "saved after the first paint, not while the window opens"
    w.close()
    assert prefs.recent_projects() == [str(folder.resolve())]


def test_a_read_only_project_opens_read_only_and_says_so(qtbot, folder, read_only_copy):
    with Project.open(folder) as p:
        flagged = p.pair_ids()[-1]
        p.flag_pair(flagged, "bob", "the prompt is cut off")
    w = make_window(qtbot, read_only_copy(folder))
    assert w.project.read_only
    assert "read-only" in w.windowTitle() and "Read-only" in w.notice_label.text()
    view = w.label_view
    assert view.pair is not None and not any(b.isEnabled() for b in view.choice_buttons.values())
    assert not view.flag_button.isEnabled() and not any(b.isEnabled() for b in view.strength_buttons.values())
    view.choose("left")
    assert "read-only" in view.note.text() and view.project.current_label(view.pair.id, "alice") is None
    view.note.setText("")
    view.open_flag_bar()  # key F
    assert "flags cannot be saved" in view.note.text() and view._flag_bar is None
    qtbot.waitUntil(lambda: view.progress.today is not None)  # today's count and recent labels read, nothing written
    assert view.progress.today == 0 and view.project.flagged_pair_count() == 1
    assert not w.import_action.isEnabled()
    data = w.show_section("Data")
    data.flagged_check.setChecked(True)
    data.apply_filters()
    qtbot.waitUntil(lambda: data.model.rowCount() == 1)
    data.table.selectRow(0)
    assert "the prompt is cut off" in data.flags_label.text()  # flags are read, and cannot be cleared
    assert data.clear_flags_button.isVisible() and not data.clear_flags_button.isEnabled()
    runs = w.show_section("Runs")
    assert runs is not None and not w.new_run_action.isEnabled()
    assert not runs.new_button.isEnabled() and not runs.generate_button.isEnabled()
    assert runs.open_launch_dialog() is None and "read-only" in runs.message.text()  # no dialog to write from
    w.close()


def test_a_run_whose_worker_was_killed_is_marked_failed_when_the_window_opens(qtbot, folder):
    import socket
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with Project.open(folder) as p:
        run = p.create_run("dpo", "tiny", {})
        p.claim_run(run, ("queued",), gone.pid, socket.gethostname())
    w = make_window(qtbot, folder)  # the Label section: the Runs section is not even built
    assert w.runs_panel is None
    r = w.project.run(run)
    assert r["status"] == "failed" and f"pid {gone.pid}" in r["error"]


def test_the_import_dialog_shows_a_deeply_nested_row_and_any_unexpected_error(qtbot, folder, tmp_path,
                                                                              monkeypatch):
    w = make_window(qtbot, folder)
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"prompt": "Q", "chosen": ' + "[" * 3000 + "]" * 3000 + ', "rejected": "x"}\n')
    dialog = ImportDialog(w.project, w)
    qtbot.addWidget(dialog)
    run_import(qtbot, dialog, deep)
    qtbot.waitUntil(lambda: dialog.errors.count() > 0)
    assert "Nothing was imported" in dialog.status.text()
    assert "deep.jsonl:1: invalid JSON: nested too deeply" in dialog.errors.item(0).text()

    from studio.store import import_writing

    def broken(*args, **kwargs):
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(import_writing, "import_file", broken)
    run_import(qtbot, dialog, deep)
    qtbot.waitUntil(lambda: "something nobody expected" in dialog.status.text())
    assert "RuntimeError" in dialog.status.text()


def test_enter_in_the_import_file_field_imports(qtbot, folder, tmp_path, monkeypatch):
    from PySide6.QtCore import Qt

    good = tmp_path / "enter.jsonl"
    good.write_text(json.dumps({"prompt": "Typed path", "response_a": "yes", "response_b": "no"}) + "\n")
    browsed = []
    monkeypatch.setattr("studio.ui.import_dialog.QFileDialog.getOpenFileName",
                        lambda *a, **k: (browsed.append(1), ("", ""))[1])
    w = make_window(qtbot, folder)
    dialog = ImportDialog(w.project, w)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    dialog.path_edit.setFocus()
    qtbot.keyClicks(dialog.path_edit, str(good))
    qtbot.keyClick(dialog.path_edit, Qt.Key.Key_Return)
    assert browsed == [] and dialog.isVisible(), "Enter neither opens the file browser nor closes the dialog"
    assert dialog.job is not None
    qtbot.waitUntil(dialog.job.isFinished, timeout=20_000)
    qtbot.waitUntil(lambda: "Imported" in dialog.status.text())
    assert w.project.pair_count() == 7
