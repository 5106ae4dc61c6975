"""The project's labeling guidelines beside the labeling view: markdown, read or edited in place, stored in
the project so every annotator sees the same ones."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLayout,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from studio.store import Project, ProjectError
from studio.ui import render

EMPTY = ("*No guidelines yet.* Press **Edit** to write what a good response is in this project: what to prefer, "
         "what makes both bad, when to skip. Markdown works: lists, **bold**, `code`, headings.")


class GuidelinesPanel(QFrame):
    """Read the guidelines, or edit them (Edit, then Save or Cancel; Ctrl+Enter saves, Esc cancels)."""

    closed = Signal()
    """The panel asked to be hidden (its × button, or Esc while reading)."""

    def __init__(self, project: Project, parent=None):
        super().__init__(parent)
        self.project = project
        self.split: QSplitter | None = None  # the splitter that puts it beside a view's body (`beside`)
        self.setProperty("pane", True)
        self.setObjectName("guidelines")
        self.title = QLabel("<b>Guidelines</b>")
        self.title.setObjectName("paneTitle")
        self.edit_button = QPushButton("Edit")
        self.edit_button.setToolTip("Edit the project's guidelines (markdown); every annotator sees them")
        self.edit_button.clicked.connect(self.start_editing)
        self.close_button = QPushButton("×")
        self.close_button.setToolTip("Hide the guidelines — key G")
        self.close_button.setAccessibleName("Hide the guidelines")
        self.close_button.clicked.connect(self.closed.emit)
        head = QHBoxLayout()
        head.setContentsMargins(0, 0, 6, 0)
        head.addWidget(self.title, 1)
        head.addWidget(self.edit_button)
        head.addWidget(self.close_button)

        self.viewer = render.SafeBrowser()
        self.viewer.setFrameShape(QFrame.Shape.NoFrame)
        self.viewer.setAccessibleName("Labeling guidelines")
        self.editor = QPlainTextEdit()
        self.editor.setAccessibleName("Guidelines text (markdown)")
        self.editor.setPlaceholderText("# What a good response does\n\n- answers the question asked\n- ...")
        self.editor.installEventFilter(self)
        self.save_button = QPushButton("Save  Ctrl+Enter")
        self.save_button.clicked.connect(self.save)
        self.cancel_button = QPushButton("Cancel  Esc")
        self.cancel_button.clicked.connect(self.stop_editing)
        self.status = QLabel()
        self.status.setObjectName("errorText")
        self.status.setWordWrap(True)
        edit_page = QFrame()
        el = QVBoxLayout(edit_page)
        el.setContentsMargins(6, 6, 6, 6)
        el.addWidget(self.editor, 1)
        el.addWidget(self.status)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.save_button)
        el.addLayout(buttons)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.viewer)
        self.pages.addWidget(edit_page)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(head)
        layout.addWidget(self.pages, 1)
        self.refresh()

    @classmethod
    def beside(cls, project: Project, body: QWidget, layout: QLayout) -> GuidelinesPanel:
        """A panel beside `body`: a splitter takes the body's place in `layout`, the body on its left and the
        panel, hidden until `reveal`, on its right."""
        panel = cls(project)
        panel.split = QSplitter(Qt.Orientation.Horizontal)
        panel.split.setChildrenCollapsible(False)
        layout.replaceWidget(body, panel.split)
        panel.split.addWidget(body)
        panel.split.addWidget(panel)
        panel.split.show()
        panel.split.setStretchFactor(0, 3)
        panel.split.setStretchFactor(1, 1)
        panel.hide()
        return panel

    def reveal(self, width: int) -> None:
        """Show the guidelines as they are now, a quarter of the splitter wide (260 to 420 px; `width` when
        the splitter has no size yet)."""
        self.refresh()
        self.show()
        if self.split is not None:
            total = sum(self.split.sizes()) or width
            side = max(260, min(420, total // 4))
            self.split.setSizes([max(1, total - side), side])

    @property
    def editing(self) -> bool:
        return self.pages.currentIndex() == 1

    def refresh(self) -> None:
        """Show the stored guidelines (another annotator may have changed them)."""
        render.render_text(self.viewer.document(), self.project.guidelines or EMPTY)

    def start_editing(self) -> None:
        self.editor.setPlainText(self.project.guidelines)
        self.status.setText("")
        self.pages.setCurrentIndex(1)
        self.edit_button.setEnabled(False)
        self.editor.setFocus()

    def stop_editing(self) -> None:
        self.pages.setCurrentIndex(0)
        self.edit_button.setEnabled(True)
        self.refresh()

    def save(self) -> bool:
        try:
            self.project.guidelines = self.editor.toPlainText().strip()
        except ProjectError as e:
            self.status.setText(f"Not saved: {e}")
            return False
        self.stop_editing()
        return True

    def eventFilter(self, obj, event) -> bool:
        if obj is self.editor and event.type() == QEvent.Type.KeyPress:
            if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and \
                    event.modifiers() & Qt.KeyboardModifier.ControlModifier:
                self.save()
                return True
            if event.key() == Qt.Key.Key_Escape:
                self.stop_editing()
                return True
        return super().eventFilter(obj, event)
