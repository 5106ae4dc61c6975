"""First run and the window's own controls: the welcome page's actions, settings, zoom, theme, menus."""

from __future__ import annotations

import pytest
from conftest import add_pairs
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication

from studio.store import Project
from studio.ui import main_window, palette, prefs, theme
from studio.ui.main_window import MainWindow
from tests.ui.helpers import show_active, styled_app  # noqa: F401  (styled_app: a fixture)

# the app's theme, as `studio gui` has it: the tests here change it, and the fixture puts it back
pytestmark = pytest.mark.usefixtures("styled_app")


@pytest.fixture
def folder(tmp_path):
    with Project.create(tmp_path / "proj", name="My prefs") as p:
        add_pairs(p, 4)
    return tmp_path / "proj"


def make_window(qtbot, folder=None) -> MainWindow:
    return show_active(qtbot, MainWindow(folder, annotator="alice"), (1024, 700))


def test_welcome_new_project_creates_it_and_shows_what_to_do_next(qtbot, tmp_path, monkeypatch):
    w = make_window(qtbot)
    page = w.welcome
    assert w.stack.currentWidget() is page and page.no_recent.isVisible() and not page.recent.isVisible()
    target = tmp_path / "fresh"
    monkeypatch.setattr(main_window.QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    page.new_button.click()
    assert w.project is not None and (target / "studio.db").exists()
    # an empty project says to import, in the Label, Data and Runs sections alike
    assert "no pairs yet" in w.label_view.empty.title.text()
    data = w.show_section("Data")
    qtbot.waitUntil(lambda: data.stack.currentWidget() is data.empty)
    assert "No pairs yet" in data.empty.title.text() and data.empty.button("Import…")
    runs = w.show_section("Runs")
    qtbot.waitUntil(lambda: runs.body.currentWidget() is runs.empty)
    assert "No runs yet" in runs.empty.title.text()
    opened = []
    monkeypatch.setattr(MainWindow, "import_dialog", lambda self: opened.append("import"))
    w.label_view.empty.button("Import…").click()
    data.empty.button("Import…").click()
    assert opened == ["import", "import"]


def test_welcome_open_project_and_recent_ones_by_keyboard(qtbot, folder, monkeypatch):
    w = make_window(qtbot)
    monkeypatch.setattr(main_window.QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    w.welcome.open_button.click()
    assert w.project is not None and w.project.name == "My prefs"
    w.close()
    assert prefs.recent_projects() == [str(folder.resolve())]
    again = make_window(qtbot)
    recent = again.welcome.recent
    assert recent.isVisible() and recent.hasFocus() and recent.count() == 1
    qtbot.keyClick(recent, Qt.Key.Key_Return)  # Enter opens the latest project
    assert again.project is not None and again.project.folder == folder


def test_welcome_opens_the_demo_creating_it_once(qtbot, tmp_path, monkeypatch):
    demo = tmp_path / "docs" / "Preference Studio demo"
    monkeypatch.setattr("studio.ui.welcome.demo_folder", lambda: demo)  # main_window imports it when used
    spawned = []
    monkeypatch.setattr("studio.ui.runs.jobs.spawn", lambda cmd, log: spawned.append(cmd))
    w = make_window(qtbot)
    w.welcome.demo_button.click()
    assert w.project is not None and w.project.folder == demo and w.project.pair_count() > 10
    assert spawned and spawned[0][-2:] == ["tiny-model", str(demo / "models" / "tiny-demo")]
    w._close_project(ask=False)
    assert w.open_demo() and len(spawned) == 1, "opened again, not created again"


def test_settings_are_applied_and_remembered(qtbot, folder):
    w = make_window(qtbot, folder)
    from studio.ui.settings_dialog import SettingsDialog

    dialog = SettingsDialog(w.annotator, w.project, gpus=[])
    qtbot.addWidget(dialog)
    dialog.annotator_edit.setText("import:x")
    dialog.goal_edit.setText("lots")
    assert dialog.settings()[0] is None
    assert any("import:" in e for e in dialog.settings()[1]) and any("Daily goal" in e for e in dialog.settings()[1])
    dialog.annotator_edit.setText("carol")
    dialog.goal_edit.setText("40")
    dialog.theme_box.setCurrentIndex(dialog.theme_box.findData("dark"))
    dialog.zoom_box.setCurrentIndex(dialog.zoom_box.findData(1.25))
    dialog.device_box.setCurrentIndex(dialog.device_box.findData("cpu"))
    dialog.cache_edit.setText("/tmp/hf-cache")
    dialog.offline_check.setChecked(False)
    dialog.counts_check.setChecked(False)
    dialog.overlap_edit.setText("3")
    values, errors = dialog.settings()
    assert errors == []
    w.apply_settings(values)
    assert w.annotator == "carol" and w.label_view.annotator == "carol" and w.label_view.progress.goal == 40
    assert prefs.get("daily_goal") == 40 and prefs.get("theme") == "dark" and prefs.get("zoom") == 1.25
    assert palette.current() is palette.DARK and theme.zoom() == 1.25
    assert w.project.show_length_counts is False and w.project.overlap_target == 3
    assert "chars" not in w.label_view.left.title.text()
    env = prefs.worker_environment()
    assert env == {"HF_HUB_OFFLINE": "0", "HF_HUB_CACHE": "/tmp/hf-cache", "CUDA_VISIBLE_DEVICES": "",
                   "ACCELERATE_USE_CPU": "true"}


def test_zoom_keys_change_the_text_size_and_it_is_remembered(qtbot, folder):
    w = make_window(qtbot, folder)
    base = QApplication.font().pointSizeF()
    browser_base = w.label_view.left.browser.font().pointSizeF()
    qtbot.keyClick(w.label_view, Qt.Key.Key_Equal, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.font().pointSizeF() == pytest.approx(base * 1.1)
    assert w.label_view.left.browser.font().pointSizeF() > browser_base, "the style sheet's sizes follow"
    qtbot.keyClick(w.label_view, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(w.label_view, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    assert prefs.get("zoom") == 0.9 and QApplication.font().pointSizeF() == pytest.approx(base * 0.9)
    qtbot.keyClick(w.label_view, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert prefs.get("zoom") == 1.0 and QApplication.font().pointSizeF() == pytest.approx(base)


def test_dark_theme_colours_the_window_rendered_text_and_charts(qtbot, folder, qapp):
    w = make_window(qtbot, folder)
    chat = w.project.add_prompt(messages=[{"role": "user", "content": "Hi"}])
    w.project.add_pair(chat, w.project.add_response(chat, "Hello"), w.project.add_response(chat, "Hey"))
    w.label_view.show_pair(w.project.pair_ids()[-1])

    def turn_background() -> str:
        doc = w.label_view.prompt_browser.document()
        return doc.rootFrame().childFrames()[0].frameFormat().background().color().name()

    assert turn_background() == palette.LIGHT.turn_backgrounds["user"]
    w.set_theme("dark")
    assert prefs.get("theme") == "dark" and palette.current() is palette.DARK
    assert qapp.palette().color(QPalette.ColorRole.Window).name() == palette.DARK.window
    assert palette.DARK.window in qapp.styleSheet()
    assert turn_background() == palette.DARK.turn_backgrounds["user"], "rendered texts are redrawn"
    runs = w.show_section("Runs")
    runs.ensure_views()
    import pyqtgraph as pg

    assert pg.getConfigOption("background") == palette.DARK.chart_background
    assert runs.monitor.graphics.backgroundBrush().color().name() == palette.DARK.chart_background
    w.set_theme("light")
    assert runs.monitor.graphics.backgroundBrush().color().name() == palette.LIGHT.chart_background


def test_system_theme_follows_the_desktop(monkeypatch):
    monkeypatch.setattr(theme, "system_is_dark", lambda: True)
    assert theme.resolve("system") is palette.DARK and theme.resolve("light") is palette.LIGHT
    monkeypatch.setattr(theme, "system_is_dark", lambda: False)
    assert theme.resolve("system") is palette.LIGHT and theme.resolve("dark") is palette.DARK


def test_ctrl_n_is_new_run_and_new_project_moved_to_ctrl_shift_n(qtbot, folder, monkeypatch):
    from studio.ui.runs.panel import RunsPanel

    w = make_window(qtbot, folder)
    asked = []
    monkeypatch.setattr(RunsPanel, "open_launch_dialog", lambda self, initial=None: asked.append(initial))
    qtbot.keyClick(w.label_view, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert asked == [None] and w.tabs.currentWidget() is w.runs_panel
    shortcuts = {a.text().replace("&", ""): a.shortcut().toString()
                 for menu in (m.menu() for m in w.menuBar().actions()) for a in menu.actions()}
    assert shortcuts["New project…"] == "Ctrl+Shift+N" and shortcuts["New run…"] == "Ctrl+N"


def test_both_palettes_name_the_same_colours_and_fill_the_whole_style_sheet():
    import re

    light, dark = palette.LIGHT, palette.DARK
    assert light.qss_values().keys() == dark.qss_values().keys()
    assert light.role_colors.keys() == dark.role_colors.keys() == light.turn_backgrounds.keys()
    for pal in (light, dark):
        sheet = theme.style_sheet(pal, 10.0)
        assert not re.findall(r"\$\{?\w+", sheet), "every $name in style.qss is a colour or a size"


def test_the_app_is_fusion_everywhere_even_where_the_desktop_asks_for_another_style(tmp_path):
    import os
    import subprocess
    import sys

    code = ("from studio.ui.app import make_app; from PySide6.QtWidgets import QApplication\n"
            "app = make_app(); app.setStyleSheet('')\n"  # the style sheet's wrapper hides the style's name
            "print(QApplication.style().name())")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_STYLE_OVERRIDE": "windows",
           "STUDIO_SETTINGS": str(tmp_path / "settings.ini")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "fusion"
