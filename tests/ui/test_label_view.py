"""The labeling workbench: keyboard-only labeling, side mapping, undo, queues, time, safe rendering."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QTextDocument
from PySide6.QtWidgets import QApplication

from studio.core.types import Choice, LabelState, Strength
from studio.ui import diff, label_view, render
from studio.ui.label_view import LabelView
from tests.ui.helpers import show_active

KEYS = {"1": Qt.Key.Key_1, "2": Qt.Key.Key_2, "3": Qt.Key.Key_3, "4": Qt.Key.Key_4, "S": Qt.Key.Key_S,
        "0": Qt.Key.Key_0, "T": Qt.Key.Key_T, "B": Qt.Key.Key_B, "Left": Qt.Key.Key_Left,
        "Right": Qt.Key.Key_Right, "Q": Qt.Key.Key_Q, "W": Qt.Key.Key_W, "E": Qt.Key.Key_E, "R": Qt.Key.Key_R}


def make_view(qtbot, project, annotator="alice") -> LabelView:
    view = show_active(qtbot, LabelView(project, annotator), (1200, 800))
    view.setFocus()
    return view


def press(qtbot, view, key: str, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.keyClick(view.focusWidget() or view, KEYS[key], modifier)


def expected(key: str, shown_left: str) -> Choice:
    """The test's own statement of the mapping: the left key prefers whatever was on the left."""
    other = "b" if shown_left == "a" else "a"
    return {"1": Choice(shown_left), "Left": Choice(shown_left), "2": Choice(other), "Right": Choice(other),
            "3": Choice.TIE, "T": Choice.TIE, "4": Choice.BOTH_BAD, "B": Choice.BOTH_BAD, "S": Choice.SKIP,
            "0": Choice.SKIP}[key]


def test_keyboard_only_flow_stores_choices_in_pair_terms(qtbot, pairs_project):
    project = pairs_project
    project.set_setting("salt", "fixed-for-test")  # a known mix of swapped and unswapped pairs
    view = make_view(qtbot, project)
    view.set_raw(True)  # compare texts exactly ("0." alone would render as an empty markdown list)
    keys = ["1", "2", "Left", "Right", "3", "T", "4", "B", "S", "0", "1", "2"]
    seen_left, done = set(), []
    for key in keys:
        pair, shown = view.pair, view.shown_left
        assert shown == project.shown_left(pair.id, "alice")
        # the screen really shows the shown_left response on the left
        left_text = pair.a.text if shown == "a" else pair.b.text
        assert view.left.browser.toPlainText().strip() == left_text.strip()
        press(qtbot, view, key)
        label = project.current_label(pair.id, "alice")
        assert label is not None, f"no label stored after key {key}"
        assert label.choice is expected(key, shown), (key, shown)
        assert label.shown_left == shown
        seen_left.add(shown)
        done.append(pair.id)
    assert seen_left == {"a", "b"}, "the test needs both swapped and unswapped pairs"
    assert len(set(done)) == len(keys), "each verdict moves on to a new pair"


def test_strength_and_rationale_by_keyboard(qtbot, pairs_project):
    view = make_view(qtbot, pairs_project)
    pair, shown = view.pair, view.shown_left
    press(qtbot, view, "W")
    press(qtbot, view, "R")
    assert view.rationale.hasFocus()
    # digits typed into the rationale are text, not verdicts
    qtbot.keyClicks(view.rationale, "2 is vague, 1 cites")
    assert view.pair.id == pair.id
    qtbot.keyClick(view.rationale, Qt.Key.Key_Return)
    assert not view.rationale.hasFocus()
    press(qtbot, view, "Right")
    label = pairs_project.current_label(pair.id, "alice")
    assert label.choice is expected("2", shown)
    assert label.strength is Strength.CLEAR
    assert label.rationale == "2 is vague, 1 cites"
    # strength and rationale start empty on the next pair
    assert view.strength() is None and view.rationale.text() == ""
    press(qtbot, view, "E")
    press(qtbot, view, "E")  # the same key again clears it
    assert view.strength() is None
    pair2 = view.pair
    press(qtbot, view, "Q")
    press(qtbot, view, "3")  # a tie has no strength
    assert pairs_project.current_label(pair2.id, "alice").strength is None


def test_undo_shows_the_pair_again_and_relabels(qtbot, pairs_project):
    project = pairs_project
    view = make_view(qtbot, project)
    first = view.pair.id
    press(qtbot, view, "1")
    second, shown2 = view.pair.id, view.shown_left
    press(qtbot, view, "W")
    press(qtbot, view, "2")
    third = view.pair.id
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert view.pair.id == second
    assert project.current_label(second, "alice") is None
    assert view.strength() is Strength.CLEAR, "the undone label's strength is offered again"
    assert "Undone" in view.note.text()
    press(qtbot, view, "1")
    assert view.pair.id == third
    history = project.label_history(second)
    assert [lab.state for lab in history] == [LabelState.UNDONE, LabelState.CURRENT]
    assert history[-1].choice is expected("1", shown2)
    assert project.current_label(first, "alice") is not None
    # undo twice walks back further
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert view.pair.id == first
    assert project.current_label(first, "alice") is None


def test_undo_with_nothing_to_undo_says_so(qtbot, pairs_project):
    view = make_view(qtbot, pairs_project)
    assert view.undo() is None
    assert "Nothing to undo" in view.note.text()


def test_queues_and_filters(qtbot, pairs_project):
    project = pairs_project
    project.overlap_target = 2
    alice = make_view(qtbot, project, "alice")
    labeled = []
    for key in ("1", "1", "1"):
        labeled.append(alice.pair.id)
        press(qtbot, alice, key)
    assert alice.pair.id not in labeled
    assert project.queue_count("alice", "mine") == 14 - 3

    bob = make_view(qtbot, project, "bob")
    bob.set_queue("needs_more")
    assert bob.pair.id in labeled
    # bob disagrees with alice on the first pair he sees (he prefers the response alice rejected)
    target = bob.pair.id
    alice_choice = project.current_label(target, "alice").choice
    bob_side = "1" if bob.shown_left != alice_choice.value else "2"
    press(qtbot, bob, bob_side)
    assert project.current_label(target, "bob").choice is not alice_choice
    assert project.queue_count("bob", "needs_more") == 2
    bob.set_queue("disagreements")
    assert bob.pair.id == target
    press(qtbot, bob, "3")  # still a disagreement (tie vs a verdict), the only one: it comes round again
    assert bob.pair.id == target
    press(qtbot, bob, "S")  # bob withdraws to a skip: alice's label stands alone, the queue is empty
    assert bob.pair is None

    bob.set_queue("all")
    seen = set()
    for _ in range(14):
        seen.add(bob.pair.id)
        press(qtbot, bob, "S")
    assert len(seen) == 14

    alice.set_queue("mine")
    alice.set_filters(split="eval")
    assert alice.pair.prompt.split == "eval"
    alice.set_filters(search="Eval question 2")
    assert alice.pair.prompt.text == "Eval question 2?"
    alice.set_filters(search="no such text anywhere")
    assert alice.pair is None
    # every verdict and strength is visibly off, and one message replaces both panes, saying what to do
    assert not any(b.isEnabled() for b in [*alice.choice_buttons.values(), *alice.strength_buttons.values()])
    assert alice.empty.isVisible() and not alice.left.isVisible() and not alice.prompt_browser.isVisible()
    assert "Nothing left" in alice.empty.title.text() and "filters" in alice.empty.title.text()
    alice.empty.button("Clear filters").click()
    assert alice.pair is not None and alice.search is None and alice.choice_buttons["left"].isEnabled()


def test_time_per_label_pauses_while_inactive(qtbot, pairs_project, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(label_view, "clock", lambda: now[0])
    view = make_view(qtbot, pairs_project)
    view.set_active(True)
    view.show_pair(view.pair.id)  # restart the pair's clock at the fake time
    pair = view.pair.id
    now[0] += 5
    view.set_active(False)  # another application in front
    now[0] += 100
    view.set_active(True)
    now[0] += 2
    press(qtbot, view, "1")
    assert pairs_project.current_label(pair, "alice").seconds == pytest.approx(7.0)
    # the next pair's clock starts when it is shown
    pair2 = view.pair.id
    now[0] += 3
    press(qtbot, view, "2")
    assert pairs_project.current_label(pair2, "alice").seconds == pytest.approx(3.0)
    assert view.progress.session.labels == 2
    assert view.progress.session.rate() == pytest.approx(2 / (10 / 3600))
    assert "this session" in view.progress.text.text()


UNTRUSTED = textwrap.dedent("""\
    Here is a picture <img src="http://example.com/track.png"> and
    <script>alert('pwned')</script>

    ![logo](https://example.com/logo.png) ![secret](file:///etc/passwd)
    """)


def test_untrusted_html_is_neither_fetched_nor_run(qtbot, project):
    pid = project.add_prompt("Say hi <script>document.title='x'</script>")
    a = project.add_response(pid, UNTRUSTED)
    b = project.add_response(pid, "plain")
    project.add_pair(pid, a, b)
    view = make_view(qtbot, project)
    pane = view.left if view.shown_left == "a" else view.right
    text = pane.browser.toPlainText()
    assert "<script>alert('pwned')</script>" in text, "script shows as text"
    assert '<img src="http://example.com/track.png">' in text, "raw HTML shows as text"
    assert "image not loaded: https://example.com/logo.png" in text
    assert "image not loaded: file:///etc/passwd" in text
    assert "<script>" in view.prompt_browser.toPlainText()
    doc = pane.browser.document()
    for url in ("http://example.com/track.png", "https://example.com/logo.png", "file:///etc/passwd"):
        assert pane.browser.loadResource(QTextDocument.ResourceType.ImageResource, QUrl(url)) is None
        assert doc.loadResource(QTextDocument.ResourceType.ImageResource, QUrl(url)) is None
    # nothing in the view can fetch: no network module was ever loaded
    assert "PySide6.QtNetwork" not in sys.modules


def test_long_response_renders_plain(qtbot, project):
    pid = project.add_prompt("Write a lot")
    long_text = ("**word** " * 12_000)[:100_000]
    a = project.add_response(pid, long_text)
    b = project.add_response(pid, "short")
    project.add_pair(pid, a, b)
    view = make_view(qtbot, project)
    pane = view.left if view.shown_left == "a" else view.right
    assert "plain text" in pane.title.text()
    assert pane.browser.toPlainText().startswith("**word**")
    assert "100,000 chars" in pane.title.text()


def test_raw_toggle_and_word_diff(qtbot, project):
    pid = project.add_prompt("Compare")
    a = project.add_response(pid, "The **cat** sat on the mat.")
    b = project.add_response(pid, "The **dog** sat on the mat.")
    project.add_pair(pid, a, b)
    view = make_view(qtbot, project)
    assert "**" not in view.left.browser.toPlainText()
    qtbot.keyClick(view, Qt.Key.Key_M)
    assert view.raw and "**" in view.left.browser.toPlainText()
    qtbot.keyClick(view, Qt.Key.Key_D)
    assert view.diff_on
    for pane in (view.left, view.right):
        sels = pane.browser.extraSelections()
        assert [s.cursor.selectedText() for s in sels] in (["**cat**"], ["**dog**"])
    qtbot.keyClick(view, Qt.Key.Key_D)
    assert view.left.browser.extraSelections() == []


def test_word_diff_spans():
    left, right = diff.word_diff("one two three four", "one 2 three four five")
    assert left == [(4, 7)]
    assert right == [(4, 5), (17, 21)]
    assert diff.word_diff("x " * (diff.MAX_WORDS + 1), "y") is None


def test_every_key_is_in_its_buttons_tooltip_and_help_overlay(qtbot, pairs_project):
    view = make_view(qtbot, pairs_project)
    for side, keys in label_view.SIDE_KEYS.items():
        tip = view.choice_buttons[side].toolTip()
        for k in keys:
            assert (k if k not in ("Left", "Right") else {"Left": "←", "Right": "→"}[k]) in tip, (side, k)
    for s, k in label_view.STRENGTH_KEYS.items():
        assert f"key {k}" in view.strength_buttons[s].toolTip()
    assert "Ctrl+Z" in view.undo_button.toolTip()
    assert "R" in view.rationale.toolTip()
    qtbot.keyClick(view, Qt.Key.Key_F1)
    assert view.overlay.isVisible()
    qtbot.keyClick(view.overlay, Qt.Key.Key_Escape)
    assert not view.overlay.isVisible()


def test_render_chat_as_turns(qtbot):
    browser = render.SafeBrowser()
    qtbot.addWidget(browser)
    render.render_chat(browser.document(), [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "Show `code`:\n\n```py\nx = 1\n```"}])
    text = browser.toPlainText()
    assert "SYSTEM" in text and "USER" in text and "x = 1" in text and "`" not in text


KILL_SCRIPT = textwrap.dedent("""\
    import sys, time
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication
    from studio.store import Project
    from studio.ui.label_view import LabelView

    app = QApplication([])
    view = LabelView(Project.open(sys.argv[1]), "killed")
    view.show()
    view.activateWindow()
    while QApplication.activeWindow() is not view:
        app.processEvents()
    for key in (Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_3, Qt.Key.Key_1, Qt.Key.Key_4):
        pair = view.pair.id
        QTest.keyClick(view, key)
        print("LABELED", pair, flush=True)
    QTest.keyClick(view, Qt.Key.Key_W)  # a label in the making: strength chosen, no verdict yet
    print("WAITING", view.pair.id, flush=True)
    time.sleep(60)
    """)


def test_killed_session_keeps_every_committed_label(pairs_project, tmp_path):
    folder = pairs_project.folder
    script = tmp_path / "label_then_wait.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE, text=True, env=env)
    labeled, pending = [], None
    try:
        for line in proc.stdout:
            word, pair = line.split()
            if word == "LABELED":
                labeled.append(int(pair))
            else:
                pending = int(pair)
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(labeled) == 5 and pending is not None
    from studio.store import Project

    with Project.open(folder) as again:
        for pid in labeled:
            lab = again.current_label(pid, "killed")
            assert lab is not None, f"label on pair {pid} lost"
        assert again.current_label(pending, "killed") is None


def test_a_key_that_closes_the_help_does_not_also_label(qtbot, pairs_project):
    view = make_view(qtbot, pairs_project)
    pair = view.pair.id
    qtbot.keyClick(view, Qt.Key.Key_Question, Qt.KeyboardModifier.ShiftModifier)
    assert view.overlay.isVisible()
    press(qtbot, view, "1")
    assert not view.overlay.isVisible()
    assert view.pair.id == pair and pairs_project.current_label(pair, "alice") is None
    press(qtbot, view, "1")  # with the help closed the key labels again
    assert pairs_project.current_label(pair, "alice") is not None


def test_filters_hand_the_keys_back(qtbot, pairs_project):
    view = make_view(qtbot, pairs_project)
    # a click on a filter does not keep the focus, where Up/Down would change the filter
    for box in (view.queue_box, view.split_box, view.source_box):
        qtbot.mouseClick(box, Qt.MouseButton.LeftButton)
        if QApplication.activePopupWidget() is not None:
            QApplication.activePopupWidget().close()
        assert not box.hasFocus()
    # reached with Tab, an arrow key opens the filter's list instead of stepping to the next value; a value
    # picked there changes the filter and gives the keys back to the workbench
    view.split_box.setFocus()
    qtbot.keyClick(view.split_box, Qt.Key.Key_Down)
    assert view.split is None and QApplication.activePopupWidget() is not None
    qtbot.keyClick(view.split_box.view(), Qt.Key.Key_Down)
    qtbot.keyClick(view.split_box.view(), Qt.Key.Key_Return)
    assert view.split == "train" and view.hasFocus()
    pair = view.pair.id
    press(qtbot, view, "1")
    assert pairs_project.current_label(pair, "alice") is not None
    # Esc in the search box returns to the keys, and digits typed there were text
    qtbot.mouseClick(view.search_edit, Qt.MouseButton.LeftButton)
    assert view.search_edit.hasFocus()
    pair = view.pair.id
    qtbot.keyClicks(view.search_edit, "12")
    assert view.search_edit.text() == "12" and view.pair.id == pair
    qtbot.keyClick(view.search_edit, Qt.Key.Key_Escape)
    assert view.hasFocus()
    press(qtbot, view, "2")
    assert pairs_project.current_label(pair, "alice") is not None


def test_rationale_escape_returns_to_the_keys(qtbot, pairs_project):
    view = make_view(qtbot, pairs_project)
    pair = view.pair.id
    press(qtbot, view, "R")
    qtbot.keyClicks(view.rationale, "3 T B S")
    qtbot.keyClick(view.rationale, Qt.Key.Key_Escape)
    assert view.hasFocus() and view.pair.id == pair
    press(qtbot, view, "4")
    assert pairs_project.current_label(pair, "alice").rationale == "3 T B S"


def test_chat_prompt_opens_at_its_last_turn(qtbot, project):
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"Turn {i}: some words here"}
             for i in range(41)]
    chat = project.add_prompt(messages=turns)
    project.add_pair(chat, project.add_response(chat, "Answer one"), project.add_response(chat, "Answer two"))
    plain = project.add_prompt("\n\n".join(f"Line {i}" for i in range(80)))
    project.add_pair(plain, project.add_response(plain, "One"), project.add_response(plain, "Two"))
    view = make_view(qtbot, project)
    bar = view.prompt_browser.verticalScrollBar()
    assert view.pair.prompt.messages
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum())
    press(qtbot, view, "1")
    assert view.pair.prompt.messages is None
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    assert bar.value() == 0, "a plain prompt is read from its start"


def test_lengths_are_counted_in_words(qtbot, project):
    pid = project.add_prompt("Count")
    project.add_pair(pid, project.add_response(pid, "Yes"), project.add_response(pid, "No way"))
    view = make_view(qtbot, project)
    titles = {view.left.title.text(), view.right.title.text()}
    assert any("3 chars · 1 word<" in t for t in titles) and any("6 chars · 2 words" in t for t in titles)


def test_a_zero_response_shows_as_written_and_raw_still_toggles(qtbot, project):
    pid = project.add_prompt("Pick a number")
    project.add_pair(pid, project.add_response(pid, "0."), project.add_response(pid, "**1.**"))
    view = make_view(qtbot, project)
    zero, one = (view.left, view.right) if view.shown_left == "a" else (view.right, view.left)
    assert zero.browser.toPlainText() == "0."
    assert one.browser.toPlainText() == "1."
    qtbot.keyClick(view, Qt.Key.Key_M)
    assert zero.browser.toPlainText() == "0." and one.browser.toPlainText() == "**1.**"


def test_a_label_that_cannot_be_saved_says_so_and_keeps_the_pair(qtbot, pairs_project, monkeypatch):
    from studio.store.project import StorageError

    view = make_view(qtbot, pairs_project)
    pair_id = view.pair.id
    view.rationale.setText("left is clearer")

    def full(*args, **kwargs):
        raise StorageError("the disk is full; nothing was saved by this change")

    monkeypatch.setattr(pairs_project, "record_label", full)
    with qtbot.waitSignal(view.save_failed) as failed:
        press(qtbot, view, "1")
    assert "disk is full" in failed.args[0]
    assert "Not saved" in view.note.text()
    # nothing moved on and nothing typed was lost: the same key works once the project is free again
    assert view.pair.id == pair_id and view.rationale.text() == "left is clearer"
    monkeypatch.undo()
    press(qtbot, view, "1")
    assert pairs_project.current_label(pair_id, "alice").rationale == "left is clearer"


def test_sync_scroll_moves_the_other_response_by_fraction_until_l_turns_it_off(qtbot, project):
    pid = project.add_prompt("Two long answers")
    a = project.add_response(pid, "\n\n".join(f"Paragraph {i} of the longer answer." for i in range(300)))
    b = project.add_response(pid, "\n\n".join(f"Paragraph {i} of the shorter one." for i in range(120)))
    project.add_pair(pid, a, b)
    view = make_view(qtbot, project)
    left, right = view.left.browser.verticalScrollBar(), view.right.browser.verticalScrollBar()
    qtbot.waitUntil(lambda: left.maximum() > 0 and right.maximum() > 0)
    left.setValue(left.maximum())
    assert right.value() == right.maximum(), "both reach their ends together"
    right.setValue(right.maximum() // 2)
    assert abs(left.value() - left.maximum() / 2) <= 0.01 * left.maximum() + 1, "half way down is half way down"
    qtbot.keyClick(view, Qt.Key.Key_L)  # Sync scroll off
    assert not view.sync_check.isChecked()
    before = right.value()
    left.setValue(0)
    assert right.value() == before
