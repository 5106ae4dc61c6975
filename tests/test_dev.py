"""`./dev app` on a fresh Debian/Ubuntu: the system packages it installs for a real window come from what
Qt's xcb plugin lacks (`ldd`), so a machine with libxcb-cursor0 but without libxcb-icccm4 gets it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

DEV = Path(__file__).resolve().parents[1] / "dev"

# `ldd libqxcb.so` on a Debian 12 machine that had libxcb-cursor0 but not libxcb-icccm4 / libxcb-keysyms1
# (trimmed; the missing ones appear twice, as ldd lists them for each library that needs them)
LDD_SAMPLE = """\
\tlinux-vdso.so.1 (0x00007ff2cedd7000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007ff2ced09000)
\tlibGL.so.1 => /lib/x86_64-linux-gnu/libGL.so.1 (0x00007ff2cec79000)
\tlibxkbcommon-x11.so.0 => not found
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007ff2cec1f000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007ff2cec17000)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-render-util.so.0 => not found
\tlibX11-xcb.so.1 => /lib/x86_64-linux-gnu/libX11-xcb.so.1 (0x00007ff2ceb87000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibglib-2.0.so.0 => not found
\tlibdbus-1.so.3 => /lib/x86_64-linux-gnu/libdbus-1.so.3 (0x00007ff2cc710000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007ff2cedd9000)
"""


# A `dev` that ran its setup when sourced fails at once here instead of installing a virtualenv
SAFE_ENV = {**os.environ, "PYTHON": "false"}


def dev_function(name: str, stdin: str = "", *args: str) -> list[str]:
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    res = subprocess.run(["bash", "-c", f'source "{DEV}"; {name} "$@"', "bash", *args], input=stdin,
                         capture_output=True, text=True, check=True, timeout=60, env=SAFE_ENV)
    return res.stdout.split()


def test_the_packages_come_from_what_ldd_says_is_missing():
    assert sorted(dev_function("missing_debian_packages", LDD_SAMPLE)) == [
        "libglib2.0-0", "libxcb-icccm4", "libxcb-keysyms1", "libxcb-render-util0", "libxkbcommon-x11-0"]


@pytest.mark.parametrize(("lib", "package"), [
    ("libxcb-cursor.so.0", "libxcb-cursor0"), ("libX11.so.6", "libx11-6"), ("libX11-xcb.so.1", "libx11-xcb1"),
    ("libEGL.so.1", "libegl1"), ("libdbus-1.so.3", "libdbus-1-3"), ("libpng16.so.16", "libpng16-16"),
    ("libz.so.1", "zlib1g"), ("libfontconfig.so.1.12.0", "libfontconfig1")])
def test_a_library_maps_to_its_debian_package(lib, package):
    assert dev_function("debian_package", "", lib) == [package]


def test_sourcing_dev_runs_nothing(tmp_path):
    res = subprocess.run(["bash", "-c", f'source "{DEV}"; echo sourced'], capture_output=True, text=True,
                         cwd=tmp_path, timeout=30, env=SAFE_ENV)
    assert res.stdout.strip() == "sourced" and not (tmp_path / ".venv").exists()
