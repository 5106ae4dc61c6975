"""The bundle script's smoke mode: it checks the icon, desktop entry and metainfo without building."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "packaging" / "bundle.py"


@pytest.fixture(scope="module")
def bundle():
    spec = importlib.util.spec_from_file_location("bundle", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_inputs_pass_the_check():
    res = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "bundle inputs ok" in res.stdout


def test_the_check_names_what_is_wrong(bundle, tmp_path):
    res = tmp_path / "resources"
    shutil.copytree(ROOT / "resources", res)
    (res / "icons" / "preference-studio-48.png").unlink()
    shutil.copy(res / "icons" / "preference-studio-64.png", res / "icons" / "preference-studio-32.png")
    desktop = res / f"{bundle.APP_ID}.desktop"
    desktop.write_text(desktop.read_text().replace("Exec=preference-studio %f\n", ""))
    meta = res / f"{bundle.APP_ID}.metainfo.xml"
    meta.write_text(meta.read_text().replace("<summary>", "<summary attr='unclosed>"))
    problems = bundle.check_inputs(res)
    text = "\n".join(problems)
    assert "preference-studio-48.png: missing" in text
    assert "preference-studio-32.png: is 64x64, expected 32x32" in text
    assert "no Exec= in [Desktop Entry]" in text
    assert "not well-formed XML" in text
    out = subprocess.run([sys.executable, str(SCRIPT), "--check", "--resources", str(res)], capture_output=True,
                         text=True)
    assert out.returncode == 1 and "bundle: " in out.stderr


def test_metainfo_must_carry_this_release(bundle, tmp_path):
    res = tmp_path / "resources"
    shutil.copytree(ROOT / "resources", res)
    meta = res / f"{bundle.APP_ID}.metainfo.xml"
    meta.write_text(meta.read_text().replace('<release version="0.1.0"', '<release version="0.0.9"'))
    assert any("no <release version=" in p for p in bundle.check_metainfo(meta))
