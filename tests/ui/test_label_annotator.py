"""The annotator's side of the labeling view, by keyboard: what was saved, today's labels against a goal,
revisiting a recent decision, flags for review, guidelines, hidden length counts, Tab order and names."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton, QApplication, QWidget

from studio.ui import prefs
from studio.ui.label_view import LabelView
from tests.ui.helpers import styled_app  # noqa: F401  (a fixture)
from tests.ui.test_label_view import make_view as make_active_view


def make_view(qtbot, project, annotator="alice") -> LabelView:
    view = make_active_view(qtbot, project, annotator)
    qtbot.waitUntil(lambda: view.progress.today is not None)  # today's labels are read once the pair is on screen
    return view


def key(qtbot, view, k, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.keyClick(view.focusWidget() or view, k, modifier)


def test_a_saved_verdict_is_confirmed_counted_for_today_and_can_be_revisited(qtbot, pairs_project):
    prefs.put("daily_goal", 3)
    view = make_view(qtbot, pairs_project)
    assert "0 of 3 today" in view.progress.text.text()
    first = view.pair.id
    key(qtbot, view, Qt.Key.Key_E)  # decisive
    key(qtbot, view, Qt.Key.Key_2)
    # confirmed just after the next pair is on screen
    saved = "✓ Saved: Right better, decisive"
    qtbot.waitUntil(lambda: view.progress._saved_note is not None and view.progress.saved_note.text() == saved)
    assert "1 of 3 today" in view.progress.text.text()
    assert (view.progress.bar.value(), view.progress.bar.maximum()) == (1, 3)
    second = view.pair.id
    key(qtbot, view, Qt.Key.Key_3)
    third = view.pair.id
    key(qtbot, view, Qt.Key.Key_1)
    qtbot.waitUntil(lambda: view.progress.saved_note.text() == "✓ Saved: Left better")
    chips = [b for b in view.progress.recent_strip.buttons if b.isVisible()]
    assert [b.property("pair_id") for b in chips] == [third, second, first], "newest first"
    assert chips[1].text() == f"#{second} Tie"
    # revisit the oldest decision from the keyboard, and change it: today's count does not grow
    chips[2].setFocus()
    key(qtbot, view, Qt.Key.Key_Space)
    assert view.pair.id == first and "You labeled this pair" in view.note.text()
    view.setFocus()
    key(qtbot, view, Qt.Key.Key_1)
    assert pairs_project.current_label(first, "alice").choice != "tie"
    qtbot.waitUntil(lambda: view.progress.recent_strip.buttons[0].property("pair_id") == first)
    assert "3 of 3 today" in view.progress.text.text() and view.progress.bar.value() == 3
    # an undo brings the replaced label back (made today too): read again from the project, still three
    key(qtbot, view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: view.progress.recent_strip.buttons[0].property("pair_id") == third)
    assert "3 of 3 today" in view.progress.text.text()


def test_only_the_annotators_own_labels_count_as_theirs(qtbot, pairs_project):
    ids = pairs_project.pair_ids()
    pairs_project.record_label(ids[0], "import:data.jsonl", "a", "a")
    pairs_project.record_label(ids[1], "bob", "a", "a")
    view = make_view(qtbot, pairs_project)
    assert "0 of 100 today" in view.progress.text.text()
    assert not any(b.isVisible() for b in view.progress.recent_strip.buttons)


def test_flag_for_review_with_a_note_by_keyboard(qtbot, pairs_project):
    view = make_view(qtbot, pairs_project)
    pair = view.pair.id
    key(qtbot, view, Qt.Key.Key_F)
    assert view.flag_bar.isVisible() and view.flag_bar.note.hasFocus()
    qtbot.keyClicks(view.flag_bar.note, "1 2 the prompt is cut off")  # digits here are text, not verdicts
    key(qtbot, view, Qt.Key.Key_Return)
    assert not view.flag_bar.isVisible() and view.hasFocus() and view.pair.id == pair
    assert [(f.annotator, f.note) for f in pairs_project.flags(pair)] == [("alice", "1 2 the prompt is cut off")]
    assert pairs_project.current_label(pair, "alice") is None
    assert "flagged" in view.pair_label.text() and "cut off" in view.pair_label.toolTip()
    # F again shows the note; Esc leaves it as it was
    key(qtbot, view, Qt.Key.Key_F)
    assert view.flag_bar.note.text() == "1 2 the prompt is cut off" and view.flag_bar.unflag_button.isVisible()
    key(qtbot, view, Qt.Key.Key_Escape)
    assert view.hasFocus() and len(pairs_project.flags(pair)) == 1
    # reviewers find it in the flagged queue
    key(qtbot, view, Qt.Key.Key_1)
    view.set_queue("flagged")
    assert view.pair.id == pair
    view.unflag_pair()
    assert pairs_project.flags(pair) == []


def test_guidelines_toggle_with_g_are_edited_in_place_and_stored_in_the_project(qtbot, pairs_project):
    view = make_view(qtbot, pairs_project)
    assert view.guidelines is None, "built when first shown"
    key(qtbot, view, Qt.Key.Key_G)
    panel = view.guidelines
    assert panel.isVisible() and "No guidelines yet" in panel.viewer.toPlainText()
    panel.edit_button.click()
    assert panel.editor.hasFocus()
    qtbot.keyClicks(panel.editor, "Prefer the correct answer")
    qtbot.keyClick(panel.editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert pairs_project.guidelines == "Prefer the correct answer"
    assert not panel.editing and "Prefer the correct answer" in panel.viewer.toPlainText()
    view.setFocus()
    key(qtbot, view, Qt.Key.Key_G)
    assert not panel.isVisible()
    key(qtbot, view, Qt.Key.Key_G)
    assert panel.isVisible()
    # remembered: the next view opens with them
    other = make_view(qtbot, pairs_project, "bob")
    assert other.guidelines is not None and other.guidelines.isVisible()


def test_a_project_can_hide_the_length_counts(qtbot, pairs_project):
    view = make_view(qtbot, pairs_project)
    assert "chars" in view.left.title.text()
    pairs_project.show_length_counts = False
    view.set_show_counts(pairs_project.show_length_counts)
    assert "chars" not in view.left.title.text() and "words" not in view.right.title.text()
    fresh = make_view(qtbot, pairs_project, "bob")
    assert "chars" not in fresh.left.title.text()


def test_the_prompt_share_dragged_is_remembered(qtbot, pairs_project):
    view = make_view(qtbot, pairs_project)
    total = sum(view.splitter.sizes())
    view.splitter.moveSplitter(int(total * 0.6), 1)
    qtbot.waitUntil(lambda: prefs.get("label/prompt_share") != prefs.DEFAULTS["label/prompt_share"])
    assert prefs.get("label/prompt_share") == pytest.approx(0.6, abs=0.05)
    assert make_view(qtbot, pairs_project, "bob")._prompt_share == pytest.approx(0.6, abs=0.05)


def test_tab_reaches_every_control_and_each_has_a_name(qtbot, pairs_project):
    view = make_view(qtbot, pairs_project)
    view.queue_box.setFocus()
    seen: list[QWidget] = []
    for _ in range(60):
        w = QApplication.focusWidget()
        if w in seen:
            break
        seen.append(w)
        qtbot.keyClick(w, Qt.Key.Key_Tab)
    expected = [view.queue_box, view.split_box, view.source_box, view.search_edit, view.raw_check,
                view.diff_check, view.sync_check, view.guidelines_button, view.prompt_browser, view.left.browser,
                view.right.browser, *view.choice_buttons.values(), *view.strength_buttons.values(), view.rationale,
                view.flag_button, view.undo_button]
    assert [w for w in seen if w in expected] == expected, "in reading order"
    for w in expected:
        assert w.accessibleName() or (isinstance(w, QAbstractButton) and w.text()), w


def test_an_empty_project_says_to_import_and_offers_it(qtbot, project):
    view = make_view(qtbot, project)
    assert view.pair is None and "no pairs yet" in view.empty.title.text()
    assert not view.flag_button.isEnabled() and not view.choice_buttons["skip"].isEnabled()
    with qtbot.waitSignal(view.import_requested):
        view.empty.button("Import…").click()


@pytest.mark.usefixtures("styled_app")
def test_disabled_verdicts_look_disabled_whatever_their_colour(qtbot, pairs_project):
    from PySide6.QtGui import QColor

    def darkest_text(button) -> float:
        image = button.grab().toImage()
        return min(QColor(image.pixel(x, y)).lightnessF()
                   for x in range(0, image.width(), 2) for y in range(0, image.height(), 2))

    view = make_view(qtbot, pairs_project)
    enabled = {side: darkest_text(b) for side, b in view.choice_buttons.items()}
    view.set_filters(search="no such text anywhere")
    for side, b in view.choice_buttons.items():
        assert not b.isEnabled() and darkest_text(b) > enabled[side] + 0.15, side
