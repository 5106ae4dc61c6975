"""Safe rendering of untrusted prompts and responses: markdown without HTML, nothing fetched, big texts plain."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from PySide6.QtCore import QEvent, QUrl
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextDocumentFragment,
    QTextFormat,
    QTextFrameFormat,
    QTextTable,
)
from PySide6.QtWidgets import QTextBrowser, QWidget

from studio.ui import palette

# Markdown layout in QTextDocument is superlinear on some inputs; beyond this many characters a text is
# shown plain so a 100k-character response still opens instantly.
MARKDOWN_LIMIT = 20_000

# Qt wraps a run of characters with no break opportunity (a base64 blob, minified code, "aaaa…" from a
# degenerate model) by trying every position, which takes about a second for a 100k-character run. Runs
# this long get an invisible break opportunity (ZERO WIDTH SPACE) every SOFT_BREAK_EVERY characters
# when shown plain; copying the text takes them out again.
SOFT_BREAK_RUN = re.compile(r"[^\s\u200b]{80,}")
SOFT_BREAK_EVERY = 40
ZWSP = "\u200b"

# GitHub dialect (tables, strikethrough, task lists) with raw HTML turned off: `<script>` and `<img>`
# in a response are shown as the characters they are, never interpreted.
MARKDOWN_FEATURES = (QTextDocument.MarkdownFeature.MarkdownDialectGitHub
                     | QTextDocument.MarkdownFeature.MarkdownNoHTML)

# Longest line of a response on a wide screen, in average characters: longer lines are hard to follow back.
READABLE_COLUMNS = 100


class SafeDocument(QTextDocument):
    """A document that never loads a resource: images and style sheets referenced by untrusted text
    (http, https, file, qrc, data) resolve to nothing, so nothing is fetched or read from disk."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.refused: list[str] = []  # what the text asked for; tests read it
        self.base_font = QFont()  # the widget's font (set from the style sheet); renders start from it
        self.soft_breaks = False  # ZERO WIDTH SPACEs were added for display (see SOFT_BREAK_RUN)
        self.turn_starts: list[int] = []  # a chat's turns: where each starts in the document
        # read-only: an undo stack would only record every format the renderer sets (and cost time)
        self.setUndoRedoEnabled(False)

    def loadResource(self, type: int, name: QUrl):
        self.refused.append(name.toString())
        return None


class SafeBrowser(QTextBrowser):
    """A read-only text view for untrusted text: links are not followed, resources are not loaded.

    With `max_columns`, lines wrap at about that many characters when the view is wider (a response on a
    wide screen), and at the view's width otherwise."""

    def __init__(self, parent: QWidget | None = None, max_columns: int | None = None):
        super().__init__(parent)
        self.setDocument(SafeDocument(self))
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.document().setDocumentMargin(10)
        self.max_columns = max_columns
        self._wrap_width = 0  # the pixel width lines wrap at; 0: the view's width

    def readable_width(self) -> int:
        """Pixels of about `max_columns` characters of this view's font, margins included."""
        if not self.max_columns:
            return 0
        margin = int(self.document().documentMargin())
        return self.fontMetrics().averageCharWidth() * self.max_columns + 2 * margin

    def viewport_width(self) -> int:
        """The width of the area the text is laid out in, as `viewport().width()` (no viewport margins are set
        here). Read from the frame and the scroll bar instead because PySide, the first time any view's
        viewport() is called, looks up what type that widget is by initialising every widget class's enums
        (about 20 ms, which the window's start paid here)."""
        bar = self.verticalScrollBar()
        return self.contentsRect().width() - (bar.width() if bar.isVisible() else 0)

    def _fit_measure(self) -> None:
        if not self.max_columns:
            return
        want = self.readable_width()
        width = want if want and self.viewport_width() > want else 0
        if width == self._wrap_width:
            return  # changing the wrap mode lays the whole text out again: only when it changes
        self._wrap_width = width
        if width:
            self.setLineWrapMode(QTextBrowser.LineWrapMode.FixedPixelWidth)
            self.setLineWrapColumnOrWidth(width)
        else:
            self.setLineWrapMode(QTextBrowser.LineWrapMode.WidgetWidth)

    def resizeEvent(self, event) -> None:
        self._fit_measure()
        super().resizeEvent(event)

    @property
    def refused(self) -> list[str]:
        return self.document().refused

    def loadResource(self, type: int, name: QUrl):
        self.document().refused.append(name.toString())
        return None

    # Copying gives what the response says, without the soft breaks added for display. This is done on the
    # copy paths (Ctrl+C, the context menu, copy()) and not by overriding createMimeDataFromSelection: a
    # QMimeData made in Python and handed to the clipboard is freed twice, and the app crashed at exit after
    # any copy.

    def selected_text(self) -> str:
        text = self.textCursor().selection().toPlainText()
        return text.replace(ZWSP, "") if getattr(self.document(), "soft_breaks", False) else text

    def copy(self) -> None:
        if self.textCursor().hasSelection():
            QGuiApplication.clipboard().setText(self.selected_text())

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.matches(QKeySequence.StandardKey.Copy):
            self.copy()
            event.accept()
            return
        super().keyPressEvent(event)

    def contextMenuEvent(self, event) -> None:
        menu = self.createStandardContextMenu(event.pos())
        for action in menu.actions():
            if action.objectName() == "edit-copy":
                action.triggered.disconnect()
                action.triggered.connect(self.copy)
        menu.exec(event.globalPos())
        menu.deleteLater()

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:
            self.document().base_font = QFont(self.font())
            if self.isVisible():
                self._fit_measure()  # else at the first resize


def base_font(doc: QTextDocument) -> QFont:
    return QFont(getattr(doc, "base_font", QFont()))


def mono_font(like: QFont | None = None) -> QFont:
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    if like is not None and like.pointSizeF() > 0:
        font.setPointSizeF(like.pointSizeF() * 0.95)
    return font


def _style_markdown(doc: QTextDocument) -> None:
    """Make markdown structure read as it does on GitHub: code on a tinted background, quotes in grey,
    tables with light solid rules (Qt's default grey outset border is heavy next to the text). Code lines
    wrap inside their block: a long line would otherwise widen the whole text and scroll it sideways."""
    pal = palette.current()
    edit = QTextCursor(doc)
    edit.beginEditBlock()  # one relayout for all the changes, not one per styled block
    block = doc.begin()
    while block.isValid():
        fmt = block.blockFormat()
        if fmt.hasProperty(QTextFormat.Property.BlockCodeFence) or fmt.nonBreakableLines():
            fmt.setBackground(QColor(pal.code_background))
            fmt.setNonBreakableLines(False)
            QTextCursor(block).setBlockFormat(fmt)
        elif fmt.intProperty(QTextFormat.Property.BlockQuoteLevel) > 0:
            cur = QTextCursor(block)
            cur.select(QTextCursor.SelectionType.BlockUnderCursor)
            grey = QTextCharFormat()
            grey.setForeground(QColor(pal.quote_text))
            cur.mergeCharFormat(grey)
        block = block.next()
    frames = list(doc.rootFrame().childFrames())
    while frames:
        frame = frames.pop()
        frames.extend(frame.childFrames())
        if isinstance(frame, QTextTable):
            tf = frame.format()
            tf.setBorderBrush(QColor(pal.table_rule))
            tf.setBorderStyle(QTextFrameFormat.BorderStyle.BorderStyle_Solid)
            frame.setFormat(tf)
    edit.endEditBlock()


def _replace_images(doc: QTextDocument, source: str) -> None:
    """Turn each markdown image into visible text naming its alt text, title and address: the annotator
    sees that the response wanted an image and what it said about it, and the layout never asks for it."""
    if "![" not in source:
        return  # every markdown image, inline or by reference, starts so: no need to walk the fragments
    found: list[tuple[int, str]] = []
    block = doc.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            frag = it.fragment()
            if frag.isValid():
                fmt = frag.charFormat()
                if fmt.isImageFormat():
                    words = [fmt.stringProperty(QTextFormat.Property.ImageAltText),
                             fmt.stringProperty(QTextFormat.Property.ImageTitle)]
                    said = " · ".join(w for w in words if w.strip())
                    name = fmt.toImageFormat().name() + (f" ({said})" if said else "")
                    for i in range(frag.length()):
                        found.append((frag.position() + i, name))
            it += 1
        block = block.next()
    if not found:
        return
    note = QTextCharFormat()
    note.setForeground(QColor(palette.current().warning_text))
    note.setFontItalic(True)
    for pos, name in reversed(found):
        cur = QTextCursor(doc)
        cur.setPosition(pos)
        cur.setPosition(pos + 1, QTextCursor.MoveMode.KeepAnchor)
        cur.insertText(f"[image not loaded: {name}]", note)


def with_soft_breaks(text: str) -> str:
    """The text with a ZERO WIDTH SPACE every few characters inside very long unbroken runs, so Qt can wrap
    them cheaply. Texts that already hold one are left alone (copying strips them all)."""
    if ZWSP in text:
        return text
    return SOFT_BREAK_RUN.sub(lambda m: ZWSP.join(m[0][i:i + SOFT_BREAK_EVERY]
                                                 for i in range(0, len(m[0]), SOFT_BREAK_EVERY)), text)


def _alnum(text: str) -> Counter:
    return Counter(filter(str.isalnum, text))


def hides_text(doc: QTextDocument, source: str) -> bool:
    """True when rendering `source` as markdown into `doc` hid something it says.

    Responses are untrusted, plain-ish text: `0.` alone is an empty list item in markdown, `5. x` then
    `3. y` is renumbered 5, 6, `&amp;` becomes `&`, a lone `#` or `-` disappears. Markdown may restyle
    a text but not change its letters and digits: every one of the source's must still be visible (in
    the text, a non-empty list item's number, a link's address, a code block's language, a ticked box).
    """
    plain = doc.toPlainText()
    if not plain.strip():
        return bool(source.strip())  # "-", "#", "---": only markup, nothing would be left to read
    missing = _alnum(source) - _alnum(plain)
    if not missing:
        return False  # the common case, decided without walking the blocks in Python
    block = doc.begin()
    while block.isValid() and missing:
        fmt = block.blockFormat()
        shown = fmt.stringProperty(QTextFormat.Property.BlockCodeLanguage)
        if block.textList() is not None and block.text().strip():
            shown += block.textList().itemText(block)
        if fmt.marker() == QTextBlockFormat.MarkerType.Checked:
            shown += "xX"
        missing -= _alnum(shown)
        block = block.next()
    # links are the one place where markdown moves letters out of the text (into the address)
    block = doc.begin()
    while block.isValid() and missing:
        it = block.begin()
        while not it.atEnd():
            fmt = it.fragment().charFormat()
            if fmt.isAnchor():
                missing -= _alnum(fmt.anchorHref())
            it += 1
        block = block.next()
    return bool(missing)


def _markdown_document(text: str, base: QFont) -> QTextDocument | None:
    """The text rendered as markdown in a document of its own, or None when markdown would hide part of it."""
    doc = SafeDocument()
    doc.setDefaultFont(base)
    doc.setMarkdown(text, MARKDOWN_FEATURES)
    _replace_images(doc, text)
    if hides_text(doc, text):
        return None
    return doc


def _insert_text(cursor: QTextCursor, text: str, raw: bool) -> bool:
    """Insert one text at the cursor as markdown, or plain when raw, too long, or not really markdown.
    Returns True when the text was shown plain because of its size."""
    long_text = len(text) > MARKDOWN_LIMIT
    rendered = None if raw or long_text else _markdown_document(text, base_font(cursor.document()))
    if rendered is None:
        fmt = QTextCharFormat()
        if raw:
            fmt.setFont(mono_font(cursor.document().defaultFont()))
        soft = with_soft_breaks(text)
        if soft != text:
            cursor.document().soft_breaks = True
        cursor.insertText(soft, fmt)
        return long_text and not raw
    cursor.insertFragment(QTextDocumentFragment(rendered))
    return False


def _set_plain(doc: QTextDocument, text: str) -> None:
    soft = with_soft_breaks(text)
    doc.soft_breaks = soft != text
    doc.setPlainText(soft)


def render_text(doc: QTextDocument, text: str, raw: bool = False) -> bool:
    """Render a response into the document. Returns True when it was too long for markdown."""
    doc.clear()
    doc.soft_breaks = False
    doc.turn_starts = []
    font = base_font(doc)
    doc.setDefaultFont(mono_font(font) if raw else font)
    if raw or len(text) > MARKDOWN_LIMIT:
        _set_plain(doc, text)
        return not raw
    doc.setMarkdown(text, MARKDOWN_FEATURES)
    _replace_images(doc, text)
    if hides_text(doc, text):
        _set_plain(doc, text)  # the default font is the proportional one: this is not raw mode
        return False
    _style_markdown(doc)
    return False


def render_chat(doc: QTextDocument, messages: Sequence[dict], raw: bool = False) -> bool:
    """Render a chat as turns: a colored role line, then the content, each turn in its own tinted box."""
    doc.clear()
    doc.soft_breaks = False
    doc.turn_starts = []
    doc.setDefaultFont(base_font(doc))
    cursor = QTextCursor(doc)
    edit = QTextCursor(doc)
    edit.beginEditBlock()  # lay the turns out once, not after each insertion
    long_text = False
    pal = palette.current()
    root = cursor.currentFrame()
    for i, m in enumerate(messages):
        role = str(m.get("role", "?"))
        content = str(m.get("content", ""))
        frame_fmt = QTextFrameFormat()
        frame_fmt.setBackground(QColor(pal.turn_backgrounds.get(role, pal.surface_alt)))
        frame_fmt.setPadding(6)
        frame_fmt.setMargin(0)
        frame_fmt.setTopMargin(0 if i == 0 else 6)
        frame_fmt.setBorder(0)
        frame_fmt.setWidth(QTextFrameFormat().width())
        cursor.insertFrame(frame_fmt)
        doc.turn_starts.append(cursor.position())
        head = QTextCharFormat()
        head.setFontWeight(QFont.Weight.Bold)
        head.setForeground(QColor(pal.role_colors.get(role, pal.muted)))
        cursor.insertText(role.upper() if role != "?" else role, head)
        cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
        long_text |= _insert_text(cursor, content, raw)
        cursor = root.lastCursorPosition()
    edit.endEditBlock()
    _hide_frame_separators(doc)
    _style_markdown(doc)
    return long_text


def _hide_frame_separators(doc: QTextDocument) -> None:
    """A document keeps an empty paragraph before, between and after its frames; shown, they put a blank
    line above the first turn and between turns. The turns' own margins space them instead."""
    it = doc.rootFrame().begin()
    while not it.atEnd():
        if it.currentFrame() is None and not it.currentBlock().text():
            it.currentBlock().setVisible(False)
        it += 1
    doc.markContentsDirty(0, doc.characterCount())


def render_prompt(doc: QTextDocument, text: str, messages: Sequence[dict] | None, raw: bool = False) -> bool:
    if messages:
        return render_chat(doc, messages, raw)
    return render_text(doc, text, raw)


def block_text_positions(doc: QTextDocument) -> tuple[str, list[int]]:
    """The document's visible text and, for each character, its position in the document. Frames and
    tables make document positions drift from `toPlainText()`, so highlights go through this map."""
    parts: list[str] = []
    positions: list[int] = []
    block = doc.begin()
    while block.isValid():
        t = block.text()
        start = block.position()
        parts.append(t)
        positions.extend(range(start, start + len(t)))
        parts.append("\n")
        positions.append(start + len(t))
        block = block.next()
    return "".join(parts), positions


def highlight_format() -> QTextCharFormat:
    fmt = QTextCharFormat()
    fmt.setBackground(QColor(palette.current().diff_highlight))
    fmt.setProperty(QTextFormat.Property.UserProperty, "diff")
    return fmt
