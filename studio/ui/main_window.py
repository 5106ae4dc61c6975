"""The main window: a welcome page to create, open or try a project, then its Label, Data and Runs sections
under a header that always shows the project's name and counts; menus, settings and zoom."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from studio.store import Project, ProjectError
from studio.ui import prefs, theme

if TYPE_CHECKING:
    from studio.ui.welcome import WelcomePage

SECTIONS = ("Label", "Data", "Runs")
def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


class MainWindow(QMainWindow):
    """One project at a time; closing asks the Runs section first (a run may still be training)."""

    project_changed = Signal(str)
    """A project was opened: its folder."""

    def __init__(self, project_path: str | Path | None = None, annotator: str | None = None,
                 parent: QWidget | None = None, remember_recent: bool = True, interactive: bool = True):
        super().__init__(parent)
        self.remember_recent = remember_recent  # off for screenshots, which must not touch user settings
        # off for windows nobody sees (screenshots): they never open a dialog that waits for a click, and
        # label as nobody (no annotator session)
        self.interactive = interactive
        self.last_error: str | None = None
        self._session: int | None = None  # this window's annotator session (a second window is warned)
        self.project: Project | None = None
        self.annotator = (annotator or prefs.default_annotator()).strip() or "annotator"
        self.label_view = None
        self.data_view = None
        self.runs_panel = None
        self._build()
        self._counts_timer = QTimer(self, singleShot=True, interval=300, timeout=self.refresh_counts)
        # Saving the recent-projects list writes the settings file (~10 ms, synced): done once the first
        # pair has been painted, not before (a zero timer would run ahead of the first paint)
        self._pending_recent: str | None = None
        self._recent_timer = QTimer(self, singleShot=True, interval=500, timeout=self._save_recent)
        if project_path is not None:
            self.open_project(project_path, create=False)
        self._update_title()

    # ------------------------------------------------------------------ layout

    @property
    def welcome(self) -> WelcomePage:
        if self._welcome is None:
            from studio.ui.welcome import WelcomePage  # not imported at all when the window opens on a project

            self._welcome = WelcomePage(self)
            self.stack.addWidget(self._welcome)
        return self._welcome

    def _build(self) -> None:
        self.header = QWidget()
        self.header.setObjectName("header")
        self.name_label = QLabel()
        self.name_label.setObjectName("projectName")
        self.counts_label = QLabel()
        self.counts_label.setObjectName("projectCounts")
        self.annotator_button = QPushButton()
        self.annotator_button.setObjectName("annotatorButton")
        self.annotator_button.setToolTip("Who is labeling: stored on every label. Click to switch.")
        self.annotator_button.setFocusPolicy(Qt.FocusPolicy.TabFocus)  # a click leaves the keys where they were
        self.annotator_button.clicked.connect(self.switch_annotator_dialog)
        # read-only, or another window labeling as the same annotator: said here, where it stays in view
        self.notice_label = QLabel()
        self.notice_label.setObjectName("projectNotice")
        self.notice_label.setWordWrap(True)
        self.notice_label.hide()
        hl = QHBoxLayout(self.header)
        hl.setContentsMargins(12, 6, 12, 6)
        hl.addWidget(self.name_label)
        hl.addSpacing(16)
        hl.addWidget(self.counts_label, 1)
        hl.addWidget(self.notice_label, 2)
        hl.addWidget(self.annotator_button)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.currentChanged.connect(self._section_changed)
        self._welcome: WelcomePage | None = None  # built when first needed: not at all when opening a project
        self.stack = QStackedWidget()
        self.stack.addWidget(self.tabs)

        central = QWidget()
        central.setObjectName("central")
        cl = QVBoxLayout(central)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(0)
        cl.addWidget(self.header)
        cl.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self._build_menus()
        self.header.hide()

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")

        def action(menu, text, slot, shortcut=None) -> QAction:
            a = QAction(text, self)
            if shortcut is not None:
                a.setShortcut(QKeySequence(shortcut))
            a.triggered.connect(slot)
            menu.addAction(a)
            return a

        # Ctrl+N is New run (the practitioner's frequent action); a new project is Ctrl+Shift+N
        action(file_menu, "&New project…", self.new_project_dialog, "Ctrl+Shift+N")
        action(file_menu, "&Open project…", self.open_project_dialog, QKeySequence.StandardKey.Open)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        action(file_menu, "Open the &demo", self.open_demo)
        file_menu.addSeparator()
        self.import_action = action(file_menu, "&Import…", self.import_dialog, "Ctrl+I")
        self.export_action = action(file_menu, "&Export…", self.export_dialog, "Ctrl+E")
        file_menu.addSeparator()
        action(file_menu, "Switch &annotator…", self.switch_annotator_dialog)
        action(file_menu, "&Settings…", self.settings_dialog, "Ctrl+,")
        file_menu.addSeparator()
        action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        view_menu = self.menuBar().addMenu("&View")
        for i, name in enumerate(SECTIONS):
            action(view_menu, name, lambda _c=False, i=i: self.show_section(SECTIONS[i]), f"Ctrl+{i + 1}")
        view_menu.addSeparator()
        action(view_menu, "&Guidelines  (G in Label)", self._toggle_guidelines)
        view_menu.addSeparator()
        self.zoom_in_action = action(view_menu, "Zoom &in", lambda: self.zoom(+1), QKeySequence.StandardKey.ZoomIn)
        # Ctrl+= is Ctrl+plus without Shift on most keyboards
        self.zoom_in_action.setShortcuts([QKeySequence(QKeySequence.StandardKey.ZoomIn), QKeySequence("Ctrl+=")])
        action(view_menu, "Zoom &out", lambda: self.zoom(-1), QKeySequence.StandardKey.ZoomOut)
        action(view_menu, "&Actual size", lambda: self.zoom(0), "Ctrl+0")
        theme_menu = view_menu.addMenu("&Theme")
        self.theme_actions = QActionGroup(self)
        for key, title in (("system", "Follow the system"), ("light", "Light"), ("dark", "Dark")):
            a = action(theme_menu, title, lambda _c=False, key=key: self.set_theme(key))
            a.setCheckable(True)
            a.setData(key)
            self.theme_actions.addAction(a)
        theme_menu.aboutToShow.connect(
            lambda: [a.setChecked(a.data() == theme.mode()) for a in self.theme_actions.actions()])
        runs_menu = self.menuBar().addMenu("&Runs")
        self.new_run_action = action(runs_menu, "&New run…", self.new_run, QKeySequence.StandardKey.New)
        action(runs_menu, "Show &runs", lambda: self.show_section("Runs"))
        help_menu = self.menuBar().addMenu("&Help")
        action(help_menu, "Labeling shortcuts", self._show_label_help)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        paths = prefs.recent_projects()
        if not paths:
            self.recent_menu.addAction("(none)").setEnabled(False)
        for path in paths:
            a = self.recent_menu.addAction(path)
            a.triggered.connect(lambda _c=False, p=path: self.open_project(p))

    # ------------------------------------------------------------------ projects

    def open_demo(self) -> bool:
        """Open the demo project, creating it first (demo_folder()); a tiny model for trying runs is written
        in the background (it needs the training libraries, which this process does not load)."""
        from studio.ui.welcome import demo_folder

        folder = demo_folder()
        if not (folder / "studio.db").exists():
            from studio.store.demo import create_demo

            try:
                create_demo(folder).close()
            except (ProjectError, OSError) as e:
                QMessageBox.warning(self, "Cannot create the demo", f"{folder}: {e}")
                return False
            self._write_tiny_model(folder)
        return self.open_project(folder)

    def _write_tiny_model(self, folder: Path) -> None:
        import sys

        from studio.ui.runs import jobs

        out = folder / "models" / "tiny-demo"
        try:
            jobs.spawn([sys.executable, "-m", "studio", "tiny-model", str(out)], folder / "models" / "tiny-demo.log")
        except OSError:
            return  # the demo works without it: runs need a model, labeling does not
        self.statusBar().showMessage("Writing a tiny model into the demo project for trying runs "
                                     "(Runs ▸ New run lists it once it is there)…", 15_000)

    def new_project_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "New project folder", str(Path.home() / "preferences"))
        if path:
            self.open_project(path, create=True)

    def open_project_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open project folder", str(Path.home()))
        if path:
            self.open_project(path)

    def open_project(self, folder: str | Path, create: bool = False) -> bool:
        """Open (or create) a project and show its Label section. False, with a message, on failure."""
        try:
            project = Project.create(folder) if create else Project.open(folder)
        except ProjectError as e:
            self.last_error = str(e)
            if self.interactive:
                QMessageBox.warning(self, "Cannot open project", str(e))
            return False
        if not self._close_project():
            project.close()
            return False
        self.project = project
        self.import_action.setEnabled(not project.read_only)
        self.new_run_action.setEnabled(not project.read_only)
        self._open_session()
        if self.remember_recent:
            self._pending_recent = str(folder)
            self._recent_timer.start()
        self._build_sections()
        self.stack.setCurrentWidget(self.tabs)
        self.header.show()
        self.refresh_counts()
        self._update_title()
        self.project_changed.emit(str(folder))
        return True

    def _save_recent(self) -> None:
        if self._pending_recent is not None:
            prefs.add_recent_project(self._pending_recent)
            self._pending_recent = None

    def _close_project(self, ask: bool = True) -> bool:
        if self.project is None:
            return True
        if ask and self.interactive and self.runs_panel is not None and not self.runs_panel.confirm_close():
            return False
        if self.label_view is not None:
            self.label_view.wait_for_save(timeout=30)  # a verdict being saved in the background goes in first
        self._close_session()
        while self.tabs.count():
            w = self.tabs.widget(0)
            self.tabs.removeTab(0)
            w.hide()  # before the project closes, so no pending refresh reads a closed database
            w.deleteLater()
        self.label_view = self.data_view = self.runs_panel = None
        self.project.close()
        self.project = None
        return True

    def _build_sections(self) -> None:
        from studio.ui.label_view import LabelView

        self.tabs.blockSignals(True)
        self.label_view = LabelView(self.project, self.annotator)
        self.label_view.counts_changed.connect(self._counts_timer.start)
        self.label_view.import_requested.connect(self.import_dialog)
        self.tabs.addTab(self.label_view, "Label")
        # Data (a table, a history, a text view) and Runs (pyqtgraph) are built the first time they are
        # shown: the window opens on the Label section, and every widget built before it is time to wait
        self.tabs.addTab(QWidget(), "Data")
        self.tabs.addTab(QWidget(), "Runs")
        self.tabs.setCurrentIndex(0)
        self.tabs.blockSignals(False)
        self._update_annotator_button()

    def _place_section(self, name: str, widget: QWidget) -> None:
        """Put a section built on first use where its placeholder tab was."""
        idx = SECTIONS.index(name)
        placeholder = self.tabs.widget(idx)
        current = self.tabs.currentIndex()
        self.tabs.blockSignals(True)
        self.tabs.removeTab(idx)
        self.tabs.insertTab(idx, widget, name)
        self.tabs.setCurrentIndex(current)
        self.tabs.blockSignals(False)
        placeholder.deleteLater()

    def _ensure_data(self):
        if self.data_view is None and self.project is not None:
            from studio.ui.data_view import DataView

            self.data_view = DataView(self.project)
            self.label_view.counts_changed.connect(self.data_view.mark_stale)
            self.data_view.open_pair.connect(self.open_pair)
            self.data_view.import_requested.connect(self.import_dialog)
            self._place_section("Data", self.data_view)
        return self.data_view

    def _ensure_runs(self):
        if self.runs_panel is None and self.project is not None:
            from studio.ui.runs import RunsPanel

            self.runs_panel = RunsPanel(self.project, self)
            # a run launched, finished or deleted changes the header's run count
            self.runs_panel.poller.runs_changed.connect(self._counts_timer.start)
            self._place_section("Runs", self.runs_panel)
        return self.runs_panel

    def _section_changed(self, index: int) -> None:
        if index == SECTIONS.index("Data"):
            self._ensure_data()
        elif index == SECTIONS.index("Runs"):
            self._ensure_runs()

    def show_section(self, name: str) -> QWidget | None:
        if self.project is None:
            return None
        idx = SECTIONS.index(name)
        if name == "Data":
            self._ensure_data()
        elif name == "Runs":
            self._ensure_runs()
        self.tabs.setCurrentIndex(idx)
        return self.tabs.widget(idx)

    def open_pair(self, pair_id: int) -> None:
        """Show a pair in the labeling view (from the data view)."""
        self.show_section("Label")
        self.label_view.show_pair(pair_id)
        self.label_view.setFocus()

    def refresh_counts(self) -> None:
        if self.project is None:
            return
        c = self.project.counts()
        self.name_label.setText(self.project.name)
        self.counts_label.setText(
            f"{c['pairs']:,} pairs  ·  {c['labeled_pairs']:,} labeled  ·  {c['labels']:,} labels  ·  "
            f"{_n(c['annotators'], 'annotator')}  ·  {_n(c['runs'], 'run')}")
        self.counts_label.setToolTip(f"{c['prompts']:,} prompts, {c['responses']:,} responses")

    def data_changed(self) -> None:
        """Pairs were added (an import): every section re-reads."""
        self.refresh_counts()
        if self.label_view is not None:
            self.label_view.reload()
        if self.data_view is not None:
            self.data_view.mark_stale()

    def _update_title(self) -> None:
        if self.project is None:
            self.setWindowTitle(prefs.APP_NAME)
            self.welcome.refresh()
            self.stack.setCurrentWidget(self.welcome)
            self.header.hide()
        else:
            # the folder only when the name does not already say it (a demo-project folder is "demo-project")
            folder = self.project.folder.resolve() if self.project.folder else None
            where = f" ({folder})" if folder and folder.name != self.project.name else ""
            mode = " — read-only" if self.project.read_only else ""
            self.setWindowTitle(f"{self.project.name}{where}{mode} — {prefs.APP_NAME}")

    # ------------------------------------------------------------------ annotator

    def _update_annotator_button(self) -> None:
        self.annotator_button.setText(f"Annotator: {self.annotator}  ▾")

    def set_annotator(self, name: str) -> None:
        name = name.strip()
        if not name:
            return
        self.annotator = name
        if self.remember_recent:
            prefs.remember_annotator(name)
        self._update_annotator_button()
        if self.label_view is not None:
            self.label_view.set_annotator(name)
        if self.project is not None:
            self._close_session()
            self._open_session()

    # ------------------------------------------------------------------ sessions (one window per annotator)

    def _open_session(self) -> None:
        """Register this window as labeling as its annotator; warn when another window already does."""
        notices = []
        if self.project.read_only:
            notices.append("<b>Read-only</b>: this project's files cannot be written here, so labeling and "
                           "imports are off; everything can be read and exported.")
        elif self.interactive:
            try:
                self._session, others = self.project.open_session(self.annotator)
            except ProjectError:
                others = []  # busy or full: the warning is a courtesy, labeling works without it
            if others:
                o = others[0]
                notices.append(f"<b>Another window is labeling as {self.annotator}</b> in this project (pid "
                               f"{o['pid']} on {o['host']}): each window undoes only its own labels, and a pair "
                               "labeled in both is not overwritten without a warning.")
        self.notice_label.setText(" ".join(notices))
        self.notice_label.setVisible(bool(notices))

    def _close_session(self) -> None:
        if self.project is not None and self._session is not None:
            try:
                self.project.close_session(self._session)
            except ProjectError:
                pass  # a session left behind is found stale by its pid
        self._session = None

    def switch_annotator_dialog(self) -> None:
        known = self.project.annotators() if self.project else []
        names = [self.annotator] + [n for n in known if n != self.annotator and not n.startswith("import:")]
        name, ok = QInputDialog.getItem(self, "Annotator", "Who is labeling? (type a new name or pick one)",
                                        names, 0, True)
        if ok and name.strip():
            self.set_annotator(name)

    # ------------------------------------------------------------------ import / export

    def import_dialog(self) -> None:
        if self.project is None:
            return
        from studio.ui.import_dialog import ImportDialog

        dialog = ImportDialog(self.project, self)
        dialog.imported.connect(self.data_changed)
        dialog.exec()

    def export_dialog(self) -> None:
        if self.project is None:
            return
        from studio.ui.import_dialog import ExportDialog

        ExportDialog(self.project, self).exec()

    def _show_label_help(self) -> None:
        if self.label_view is not None:
            self.show_section("Label")
            self.label_view.toggle_help()

    def _toggle_guidelines(self) -> None:
        if self.label_view is not None:
            self.show_section("Label")
            self.label_view.toggle_guidelines()

    def new_run(self) -> None:
        """Runs ▸ New run (Ctrl+N): the launch dialog, over the Runs section."""
        panel = self.show_section("Runs")
        if panel is not None:
            panel.open_launch_dialog()

    # ------------------------------------------------------------------ settings, theme, zoom

    def zoom(self, steps: int) -> None:
        """Larger (steps > 0), smaller, or the desktop's own size (0); remembered for next time."""
        value = 1.0 if steps == 0 else theme.step_zoom(theme.zoom(), steps)
        theme.apply(QApplication.instance(), zoom=value)
        if self.remember_recent:
            prefs.put("zoom", value)
        self.statusBar().showMessage(f"Text size {value:.0%}", 2000)

    def set_theme(self, mode: str) -> None:
        theme.apply(QApplication.instance(), mode=mode)
        if self.remember_recent:
            prefs.put("theme", mode)

    def settings_dialog(self) -> bool:
        """Settings (Ctrl+,); applied and remembered on OK. True when accepted."""
        from studio.ui.runs import resources
        from studio.ui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.annotator, self.project, gpus=resources.gpus(), parent=self)
        try:
            if dialog.exec() != SettingsDialog.DialogCode.Accepted:
                return False
            self.apply_settings(dialog.settings()[0])
            return True
        finally:
            dialog.deleteLater()  # a child of the window otherwise, kept until it closes

    def apply_settings(self, values) -> None:
        """Apply and remember what the settings dialog was left with."""
        for key in ("daily_goal", "theme", "zoom", "device", "hf_cache", "offline"):
            prefs.put(key, getattr(values, key))
        theme.apply(QApplication.instance(), mode=values.theme, zoom=values.zoom)
        if values.annotator != self.annotator:
            self.set_annotator(values.annotator)
        if self.label_view is not None:
            self.label_view.set_goal(values.daily_goal)
        if self.project is not None and values.show_length_counts is not None:
            try:
                self.project.show_length_counts = values.show_length_counts
                self.project.overlap_target = values.overlap_target
            except ProjectError as e:
                QMessageBox.warning(self, "Project settings not saved", str(e))
            if self.label_view is not None:
                self.label_view.set_show_counts(self.project.show_length_counts)
            self.data_changed()  # the overlap target changes the "needs another label" queue

    # ------------------------------------------------------------------ closing

    def _active_runs(self) -> bool:
        if self.project is None:
            return False
        with contextlib.suppress(Exception):
            return self.project.active_run_count() > 0
        return False

    def closeEvent(self, event) -> None:
        # the Runs section decides whether closing is fine (a run may be training); it is built here only
        # when it never was and a run is active, so it can still ask. A window nobody sees asks nothing.
        if self.interactive and self.runs_panel is None and self._active_runs():
            self._ensure_runs()
        if self.interactive and self.runs_panel is not None and not self.runs_panel.confirm_close():
            event.ignore()
            return
        self._recent_timer.stop()
        self._save_recent()  # closed within the first half second: still remembered
        prefs.settings().setValue("window/geometry", self.saveGeometry())
        self._close_project(ask=False)
        event.accept()
