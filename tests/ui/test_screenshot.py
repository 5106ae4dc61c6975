"""`studio screenshot`: real views rendered offscreen to PNG files of the asked size."""

from __future__ import annotations

import pytest
from conftest import add_pairs
from PySide6.QtGui import QImage

from studio.cli import main
from studio.store import Project
from studio.ui import screenshot


@pytest.fixture(autouse=True)
def _own_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_SETTINGS", str(tmp_path / "settings.ini"))


@pytest.fixture
def folder(tmp_path):
    with Project.create(tmp_path / "proj") as p:
        add_pairs(p, 5)
    return tmp_path / "proj"


@pytest.mark.parametrize(("view", "size"), [("label", "1280x800"), ("data", "1000x700"), ("welcome", "1024x700"),
                                            ("settings", "1024x700"), ("launch", "1024x700")])
def test_screenshot_writes_png_of_size(qapp, folder, tmp_path, view, size):
    out = tmp_path / f"{view}.png"
    assert main(["screenshot", str(folder), "--view", view, "--out", str(out), "--size", size]) == 0
    image = QImage(str(out))
    w, h = (int(v) for v in size.split("x"))
    assert (image.width(), image.height()) == (w, h)
    assert len({image.pixel(x, y) for x in range(0, w, 37) for y in range(0, h, 37)}) > 5, "not a blank image"
    from studio.ui import prefs

    assert prefs.recent_projects() == [], "screenshots leave the user's recent projects alone"


def test_screenshot_errors(qapp, folder, tmp_path, capsys):
    assert main(["screenshot", str(folder), "--view", "nope", "--out", str(tmp_path / "x.png")]) == 2
    assert "unknown view 'nope'" in capsys.readouterr().err
    assert main(["screenshot", str(folder), "--view", "label", "--out", str(tmp_path / "x.png"),
                 "--size", "big"]) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_registry_has_builtin_and_runs_views():
    names = set(screenshot.views())
    assert {"label", "data"} <= names
    screenshot.register_view("extra", lambda window, args: window)
    assert "extra" in screenshot.views()


def test_screenshot_takes_run_ids_after_one_flag_as_the_readme_shows():
    from studio.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["screenshot", "p", "--view", "compare", "--run", "1", "2", "--out", "x.png"]).runs == [1, 2]
    assert parse(["screenshot", "p", "--view", "compare", "--run", "1", "--run", "2", "--out", "x.png"]).runs == [1, 2]
    assert parse(["screenshot", "p", "--view", "label", "--out", "x.png"]).runs == []


def _mean_lightness(image: QImage) -> float:
    from PySide6.QtGui import QColor

    points = [(x, y) for x in range(0, image.width(), 23) for y in range(0, image.height(), 23)]
    return sum(QColor(image.pixel(x, y)).lightnessF() for x, y in points) / len(points)


def test_screenshot_in_the_dark_theme_is_dark_and_leaves_the_light_one_alone(qapp, folder, tmp_path):
    from studio.ui import palette

    light, dark = tmp_path / "light.png", tmp_path / "dark.png"
    assert main(["screenshot", str(folder), "--view", "label", "--theme", "dark", "--out", str(dark)]) == 0
    assert main(["screenshot", str(folder), "--view", "label", "--out", str(light)]) == 0
    assert _mean_lightness(QImage(str(dark))) < 0.3 < 0.8 < _mean_lightness(QImage(str(light)))
    assert palette.current() is palette.LIGHT
