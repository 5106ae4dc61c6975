"""A pair on screen: the prompt pane over two response panes, rendered safely; the labeling view and the
Data view's detail both show pairs with these."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSplitter, QTextEdit, QVBoxLayout, QWidget

from studio.core.types import Pair, Prompt
from studio.ui import diff, palette, render


def count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _pane_frame(frame: QFrame) -> QVBoxLayout:
    frame.setProperty("pane", True)
    layout = QVBoxLayout(frame)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(0)
    return layout


class ResponsePane(QFrame):
    """One response: a header with its name and (unless the project hides them) its length, and the text,
    whose lines stop at about READABLE_COLUMNS characters on a wide screen."""

    def __init__(self, name: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.name = name
        self.setObjectName(f"pane_{name.lower()}")
        self.title = QLabel()
        self.title.setObjectName("paneTitle")
        self.browser = render.SafeBrowser(max_columns=render.READABLE_COLUMNS)
        self.browser.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.browser.setFrameShape(QFrame.Shape.NoFrame)
        self.browser.setAccessibleName(f"{name} response")
        self.browser.setTabChangesFocus(True)  # Tab moves on to the next control, not through links
        layout = _pane_frame(self)
        layout.addWidget(self.title)
        layout.addWidget(self.browser, 1)

    def show_text(self, text: str, raw: bool, counts: bool = True) -> None:
        long_text = render.render_text(self.browser.document(), text, raw)
        bits = []
        if counts:
            words = len(diff.WORD.findall(text)) if len(text) < 2_000_000 else None
            bits.append(count(len(text), "char") + (f" · {count(words, 'word')}" if words is not None else ""))
        if long_text:
            bits.append("long: shown as plain text")
        muted = palette.current().muted
        note = f"&nbsp;&nbsp;<span style='color:{muted}'>{'  ·  '.join(bits)}</span>" if bits else ""
        self.title.setText(f"<b>{html.escape(self.name)}</b>{note}")
        self.browser.setExtraSelections([])

    def clear(self) -> None:
        self.title.setText(f"<b>{html.escape(self.name)}</b>")
        self.browser.clear()


class PromptPane(QFrame):
    """The prompt: a header (its title, how many turns of a chat are scrolled away above, and the caller's
    controls) over the rendered text. A chat opens at its last turn, the one the responses answer, and
    stays there through the layout passes that follow until the reader scrolls."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = QLabel("<b>Prompt</b>")
        self.title.setObjectName("paneTitle")
        self.earlier = QLabel()
        self.earlier.setObjectName("mutedLabel")
        self.earlier.setToolTip("A chat opens at its last turn, the one the responses answer; scroll up for the rest")
        self.browser = render.SafeBrowser()
        self.browser.setObjectName("promptBrowser")
        self.browser.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.browser.setFrameShape(QFrame.Shape.NoFrame)
        self.browser.setAccessibleName("Prompt")
        self.browser.setTabChangesFocus(True)
        self.at_end = False
        bar = self.browser.verticalScrollBar()
        bar.rangeChanged.connect(lambda _lo, hi: self.at_end and bar.setValue(hi))
        # the text is laid out over several passes: count the turns above again once it has settled
        bar.rangeChanged.connect(lambda _lo, _hi: self._count_earlier())
        bar.actionTriggered.connect(lambda _action: setattr(self, "at_end", False))
        bar.valueChanged.connect(lambda _v: self._count_earlier())
        self.head = QWidget()
        self.head.setObjectName("promptHead")
        self.controls = QHBoxLayout(self.head)
        self.controls.setContentsMargins(0, 0, 8, 0)
        self.controls.addWidget(self.title)
        self.controls.addWidget(self.earlier, 1)
        layout = _pane_frame(self)
        layout.addWidget(self.head)
        layout.addWidget(self.browser, 1)

    def add_control(self, widget: QWidget) -> None:
        self.controls.addWidget(widget)

    def show_prompt(self, prompt: Prompt, raw: bool) -> None:
        self.at_end = bool(prompt.messages)
        render.render_prompt(self.browser.document(), prompt.text, prompt.messages, raw)
        self.scroll_home()

    def scroll_home(self) -> None:
        """A chat at its end, a plain prompt at its start."""
        bar = self.browser.verticalScrollBar()
        bar.setValue(bar.maximum() if self.at_end else 0)
        self._count_earlier()

    def clear(self) -> None:
        self.at_end = False
        self.browser.clear()
        self.browser.document().turn_starts = []
        self._count_earlier()

    def earlier_turns(self) -> int:
        """Turns of the chat wholly above the visible part (0 for a plain prompt)."""
        doc = self.browser.document()
        starts = getattr(doc, "turn_starts", [])
        if len(starts) < 2:
            return 0
        top = self.browser.verticalScrollBar().value()  # the viewport's top, in document pixels
        layout = doc.documentLayout()
        cursor = QTextCursor(doc)
        above = 0
        for pos in starts:
            cursor.setPosition(min(pos, doc.characterCount() - 1))
            if layout.frameBoundingRect(cursor.currentFrame()).bottom() > top:
                break
            above += 1
        return above

    def _count_earlier(self) -> None:
        n = self.earlier_turns()
        self.earlier.setText(f"↑ {count(n, 'earlier turn')} above" if n else "")

    def content_height(self) -> int:
        """The height the prompt needs to show all of it at the current width."""
        doc = self.browser.document()
        doc.setTextWidth(max(100, self.browser.viewport_width()))
        return int(doc.size().height()) + self.head.sizeHint().height() + 8


class PairPanes(QSplitter):
    """The prompt pane above two equal response panes side by side (a layout between them, not a splitter, so
    neither side can look more important); the handle sets how much height the prompt gets."""

    def __init__(self, first: str, second: str, spacing: int = 8, parent: QWidget | None = None):
        super().__init__(Qt.Orientation.Vertical, parent)
        self.prompt = PromptPane()
        self.first = ResponsePane(first)
        self.second = ResponsePane(second)
        responses = QWidget()
        rl = QHBoxLayout(responses)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.setSpacing(spacing)
        rl.addWidget(self.first, 1)
        rl.addWidget(self.second, 1)
        self.addWidget(self.prompt)
        self.addWidget(responses)
        self.setStretchFactor(0, 1)
        self.setStretchFactor(1, 3)
        self.setChildrenCollapsible(False)
        self.synced = False
        """Scroll the two responses together (the labeling view's Sync scroll)."""
        self._following = False
        for a, b in ((self.first, self.second), (self.second, self.first)):
            a.browser.verticalScrollBar().valueChanged.connect(lambda _v, a=a, b=b: self._follow(a, b))

    def _follow(self, source: ResponsePane, target: ResponsePane) -> None:
        if not self.synced or self._following:
            return
        s, t = source.browser.verticalScrollBar(), target.browser.verticalScrollBar()
        self._following = True
        try:
            # by fraction, so two responses of different lengths reach their ends together
            frac = s.value() / s.maximum() if s.maximum() else 0.0
            t.setValue(round(frac * t.maximum()))
        finally:
            self._following = False

    def fit_prompt(self, share: float) -> None:
        """Give the prompt the height it needs, up to `share` of the space (what the annotator last gave it by
        dragging the handle), so a short prompt leaves the responses room and a long one scrolls instead of
        pushing them away."""
        total = sum(self.sizes())
        if total <= 0:
            return
        prompt_h = max(90, min(self.prompt.content_height(), int(total * share)))
        self.setSizes([prompt_h, total - prompt_h])

    def highlight_differences(self) -> bool:
        """Mark the words in which the two responses differ, as rendered; False when they are too long for a
        word diff (nothing marked)."""
        docs = [self.first.browser.document(), self.second.browser.document()]
        mapped = [render.block_text_positions(d) for d in docs]
        spans = diff.word_diff(mapped[0][0], mapped[1][0])
        if spans is None:
            return False
        fmt = render.highlight_format()
        for pane, (_text, positions), side_spans in zip((self.first, self.second), mapped, spans, strict=True):
            selections = []
            for start, end in side_spans:
                sel = QTextEdit.ExtraSelection()
                cur = QTextCursor(pane.browser.document())
                cur.setPosition(positions[start])
                cur.setPosition(positions[end - 1] + 1, QTextCursor.MoveMode.KeepAnchor)
                sel.cursor = cur
                sel.format = fmt
                selections.append(sel)
            pane.browser.setExtraSelections(selections)
        return True

    def clear_differences(self) -> None:
        for pane in (self.first, self.second):
            pane.browser.setExtraSelections([])

    def scroll_responses(self, direction: int) -> None:
        """Both responses half a page down (1) or up (-1)."""
        for pane in (self.first, self.second):
            bar = pane.browser.verticalScrollBar()
            bar.setValue(bar.value() + direction * bar.pageStep() // 2)


class PairPreview(PairPanes):
    """A pair as the labeling view shows it (prompt above, the responses side by side, markdown rendered),
    with the pair's own A and B rather than an annotator's sides."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("A", "B", spacing=6, parent=parent)
        self.a, self.b = self.first, self.second

    def show_pair(self, pair: Pair | None, counts: bool = True) -> None:
        if pair is None:
            self.prompt.clear()
            self.a.clear()
            self.b.clear()
            return
        self.prompt.show_prompt(pair.prompt, raw=False)
        self.a.show_text(pair.a.text, raw=False, counts=counts)
        self.b.show_text(pair.b.text, raw=False, counts=counts)
