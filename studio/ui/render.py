"""Safe rendering of untrusted prompts and responses: markdown without HTML, nothing fetched, big texts plain."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QEvent, QUrl
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextDocumentFragment,
    QTextFormat,
    QTextFrameFormat,
)
from PySide6.QtWidgets import QTextBrowser, QWidget

# Markdown layout in QTextDocument is superlinear on some inputs; beyond this many characters a text is
# shown plain so a 100k-character response still opens instantly.
MARKDOWN_LIMIT = 20_000

# GitHub dialect (tables, strikethrough, task lists) with raw HTML turned off: `<script>` and `<img>`
# in a response are shown as the characters they are, never interpreted.
MARKDOWN_FEATURES = (QTextDocument.MarkdownFeature.MarkdownDialectGitHub
                     | QTextDocument.MarkdownFeature.MarkdownNoHTML)

ROLE_COLORS = {"system": "#6b6f76", "user": "#1f5fbf", "assistant": "#2e7d32", "tool": "#8a5a00"}
TURN_BACKGROUNDS = {"system": "#f3f3f4", "user": "#eef4fc", "assistant": "#f1f8f1", "tool": "#fbf5ea"}


class SafeDocument(QTextDocument):
    """A document that never loads a resource: images and style sheets referenced by untrusted text
    (http, https, file, qrc, data) resolve to nothing, so nothing is fetched or read from disk."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.refused: list[str] = []  # what the text asked for; tests read it
        self.base_font = QFont()  # the widget's font (set from the style sheet); renders start from it

    def loadResource(self, type: int, name: QUrl):
        self.refused.append(name.toString())
        return None


class SafeBrowser(QTextBrowser):
    """A read-only text view for untrusted text: links are not followed, resources are not loaded."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setDocument(SafeDocument(self))
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.document().setDocumentMargin(10)

    @property
    def refused(self) -> list[str]:
        return self.document().refused

    def loadResource(self, type: int, name: QUrl):
        self.document().refused.append(name.toString())
        return None

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:
            self.document().base_font = QFont(self.font())


def base_font(doc: QTextDocument) -> QFont:
    return QFont(getattr(doc, "base_font", QFont()))


def mono_font(like: QFont | None = None) -> QFont:
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    if like is not None and like.pointSizeF() > 0:
        font.setPointSizeF(like.pointSizeF() * 0.95)
    return font


def _style_code_blocks(doc: QTextDocument) -> None:
    """Give fenced and indented code a tinted background so it reads as code, as on GitHub."""
    block = doc.begin()
    while block.isValid():
        fmt = block.blockFormat()
        if fmt.hasProperty(QTextFormat.Property.BlockCodeFence) or fmt.nonBreakableLines():
            cur = QTextCursor(block)
            fmt.setBackground(QColor("#f3f4f6"))
            cur.setBlockFormat(fmt)
        block = block.next()


def _replace_images(doc: QTextDocument) -> None:
    """Turn each markdown image into visible text naming its address: the annotator sees that the
    response wanted an image, and the layout never asks for it."""
    found: list[tuple[int, str]] = []
    block = doc.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            frag = it.fragment()
            if frag.isValid():
                fmt = frag.charFormat()
                if fmt.isImageFormat():
                    for i in range(frag.length()):
                        found.append((frag.position() + i, fmt.toImageFormat().name()))
            it += 1
        block = block.next()
    if not found:
        return
    note = QTextCharFormat()
    note.setForeground(QColor("#8a5a00"))
    note.setFontItalic(True)
    for pos, name in reversed(found):
        cur = QTextCursor(doc)
        cur.setPosition(pos)
        cur.setPosition(pos + 1, QTextCursor.MoveMode.KeepAnchor)
        cur.insertText(f"[image not loaded: {name}]", note)


def _insert_text(cursor: QTextCursor, text: str, raw: bool) -> bool:
    """Insert one text at the cursor as markdown, or plain when raw or too long. Returns True when the
    text was shown plain because of its size."""
    if raw or len(text) > MARKDOWN_LIMIT:
        fmt = QTextCharFormat()
        if raw:
            fmt.setFont(mono_font(cursor.document().defaultFont()))
        cursor.insertText(text, fmt)
        return not raw
    cursor.insertFragment(QTextDocumentFragment.fromMarkdown(text, MARKDOWN_FEATURES))
    return False


def render_text(doc: QTextDocument, text: str, raw: bool = False) -> bool:
    """Render a response into the document. Returns True when it was too long for markdown."""
    doc.clear()
    font = base_font(doc)
    doc.setDefaultFont(mono_font(font) if raw else font)
    if raw or len(text) > MARKDOWN_LIMIT:
        doc.setPlainText(text)
        return not raw
    doc.setMarkdown(text, MARKDOWN_FEATURES)
    _replace_images(doc)
    _style_code_blocks(doc)
    return False


def render_chat(doc: QTextDocument, messages: Sequence[dict], raw: bool = False) -> bool:
    """Render a chat as turns: a colored role line, then the content, each turn in its own tinted box."""
    doc.clear()
    doc.setDefaultFont(base_font(doc))
    cursor = QTextCursor(doc)
    long_text = False
    root = cursor.currentFrame()
    for i, m in enumerate(messages):
        role = str(m.get("role", "?"))
        content = str(m.get("content", ""))
        frame_fmt = QTextFrameFormat()
        frame_fmt.setBackground(QColor(TURN_BACKGROUNDS.get(role, "#f6f6f6")))
        frame_fmt.setPadding(6)
        frame_fmt.setMargin(0)
        frame_fmt.setTopMargin(0 if i == 0 else 6)
        frame_fmt.setBorder(0)
        frame_fmt.setWidth(QTextFrameFormat().width())
        cursor.insertFrame(frame_fmt)
        head = QTextCharFormat()
        head.setFontWeight(QFont.Weight.Bold)
        head.setForeground(QColor(ROLE_COLORS.get(role, "#444444")))
        cursor.insertText(role.upper() if role != "?" else role, head)
        cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
        long_text |= _insert_text(cursor, content, raw)
        cursor = root.lastCursorPosition()
    _replace_images(doc)
    _style_code_blocks(doc)
    return long_text


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
    fmt.setBackground(QColor("#ffe08a"))
    fmt.setProperty(QTextFormat.Property.UserProperty, "diff")
    return fmt
