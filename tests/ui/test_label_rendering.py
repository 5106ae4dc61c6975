"""How prompts and responses look: chats as turns from the first line, markdown only where it hides nothing,
long unbroken text that wraps and copies back as it was stored."""

from __future__ import annotations

import itertools

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextDocument
from PySide6.QtWidgets import QApplication

from studio.ui import render

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What's 15% of 80?"},
        {"role": "assistant", "content": "12."}, {"role": "user", "content": "And plus 80?"}]


@pytest.fixture
def browser(qtbot):
    b = render.SafeBrowser()
    qtbot.addWidget(b)
    b.resize(600, 400)
    b.show()
    return b


def frames_geometry(doc: QTextDocument) -> list[tuple[float, float]]:
    layout = doc.documentLayout()
    return [(r.top(), r.bottom()) for r in (layout.frameBoundingRect(f) for f in doc.rootFrame().childFrames())]


def test_chat_starts_with_its_first_turn_and_turns_sit_close(browser):
    doc = browser.document()
    render.render_chat(doc, CHAT)
    doc.setTextWidth(580)
    turns = frames_geometry(doc)
    assert len(turns) == 4
    # no blank line above the first turn: it starts at the document margin
    assert turns[0][0] <= doc.documentMargin() + 1
    # between turns only the turn's own top margin (6 px), no empty paragraph
    for (_top, bottom), (next_top, _b) in itertools.pairwise(turns):
        assert next_top - bottom <= 7
    text = browser.toPlainText()
    assert "SYSTEM" in text and "What's 15% of 80?" in text


@pytest.mark.parametrize("text", [
    "0.",                      # an empty ordered-list item
    "1)",
    "5. five\n3. three",       # markdown would renumber the second item to 6
    "#",                       # an empty heading
    "- ",                      # an empty bullet
    "---",                     # only a rule: nothing left to read
    "Tom &amp; Jerry",         # an entity would be decoded
    "[](http://x.example)",    # a link with no text
])
def test_markdown_that_would_hide_or_change_text_is_shown_as_written(browser, text):
    long_text = render.render_text(browser.document(), text)
    assert not long_text
    assert browser.toPlainText() == text
    assert not browser.document().soft_breaks


@pytest.mark.parametrize(("text", "shown"), [
    ("**bold** and `code`", "bold and code"),
    ("1990. A great year.", "A great year."),           # the list keeps its number as the marker
    ("```python\nx = 1\n```", "x = 1"),                  # the fence's language is not lost text
    ("See [the docs](https://docs.example/a1).", "See the docs."),
    ("- [x] done\n- [ ] todo", "done\ntodo"),
    ("| a | b |\n|---|---|\n| 1 | 2 |", None),
])
def test_real_markdown_is_rendered(browser, text, shown):
    render.render_text(browser.document(), text)
    plain = browser.toPlainText()
    if shown is not None:
        assert plain == shown
    assert "**" not in plain and "```" not in plain and "|" not in plain


def test_markdown_inside_a_chat_turn_follows_the_same_rule(browser):
    render.render_chat(browser.document(), [{"role": "user", "content": "0."},
                                            {"role": "assistant", "content": "**yes**"}])
    text = browser.toPlainText()
    assert "0." in text
    assert "yes" in text and "**" not in text


def test_images_are_named_with_what_the_response_said_about_them(browser):
    render.render_text(browser.document(), 'Look: ![a red logo](https://example.com/l.png "Logo")')
    assert browser.toPlainText() == "Look: [image not loaded: https://example.com/l.png (a red logo · Logo)]"
    assert set(browser.refused) <= {"https://example.com/l.png"}, "asked for, refused, never fetched"


@pytest.mark.parametrize("raw", [False, True])
def test_long_unbroken_run_gets_soft_breaks_that_copying_removes(qtbot, browser, raw):
    text = "start " + "QUJD" * 25_000 + " end"
    render.render_text(browser.document(), text, raw=raw)
    doc = browser.document()
    shown = browser.toPlainText()
    assert doc.soft_breaks and render.ZWSP in shown
    assert shown.replace(render.ZWSP, "") == text, "only invisible break opportunities were added"
    browser.selectAll()
    browser.copy()
    assert QApplication.clipboard().text() == text
    QApplication.clipboard().clear()
    qtbot.keyClick(browser, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)  # what a person does
    assert QApplication.clipboard().text() == text


def test_soft_breaks_leave_ordinary_text_and_existing_zero_width_spaces_alone():
    assert render.with_soft_breaks("short words only") == "short words only"
    assert render.with_soft_breaks("x" * 79) == "x" * 79
    spaced = "a\u200bb" + "y" * 200
    assert render.with_soft_breaks(spaced) == spaced
    broken = render.with_soft_breaks("y" * 100)
    assert broken.split(render.ZWSP) == ["y" * 40, "y" * 40, "y" * 20]


def test_the_process_exits_cleanly_after_copying_from_a_response(tmp_path):
    # a QMimeData made in Python and handed to the clipboard used to be freed twice: segfault at exit
    import os
    import subprocess
    import sys

    script = tmp_path / "copy_then_quit.py"
    script.write_text(
        "from PySide6.QtWidgets import QApplication\n"
        "from studio.ui import render\n"
        "app = QApplication([])\n"
        "b = render.SafeBrowser()\n"
        "render.render_text(b.document(), 'start ' + 'QUJD' * 25000 + ' end', raw=False)\n"
        "b.selectAll(); b.copy()\n"
        "assert QApplication.clipboard().text().startswith('start QUJD')\n")
    done = subprocess.run([sys.executable, str(script)], env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_response_wraps_at_about_a_hundred_characters_on_a_wide_view_and_at_the_view_on_a_narrow_one(qtbot):
    from PySide6.QtWidgets import QTextEdit

    b = render.SafeBrowser(max_columns=render.READABLE_COLUMNS)
    qtbot.addWidget(b)
    b.setPlainText(" ".join(["word"] * 400))  # long enough for a vertical scroll bar when narrow
    readable = b.readable_width()
    # readable_width: about 100 average characters of the view's font, with the document's margins
    assert readable == b.fontMetrics().averageCharWidth() * 100 + 2 * int(b.document().documentMargin())
    b.resize(readable * 2, 300)
    b.show()
    qtbot.waitUntil(lambda: b.lineWrapMode() == QTextEdit.LineWrapMode.FixedPixelWidth)
    assert b.lineWrapColumnOrWidth() == readable
    b.resize(readable // 2, 300)
    qtbot.waitUntil(lambda: b.lineWrapMode() == QTextEdit.LineWrapMode.WidgetWidth)
    # the width it decides by is the viewport's, read without asking PySide for the viewport at start: with
    # the scroll bar shown and without it
    QApplication.processEvents()
    assert b.verticalScrollBar().isVisible()
    assert b.viewport_width() == b.viewport().width()
    b.setPlainText("short")
    QApplication.processEvents()
    assert not b.verticalScrollBar().isVisible()
    assert b.viewport_width() == b.viewport().width()
